"""Settings of the main server, its workers, the standalone process and the CLI.

Every setting is read here, once: `load_settings` merges CLI flags > `FLUX_*` environment
variables > `flux.toml` `[flux]` > defaults into one frozen `Settings`. The package is split by
concern: the values (`settings`), their outside names (`names`), database URLs
(`database_url`), raw-value conversion (`convert`) and the layers (`sources`). Import from
here; the names below are the public ones.
"""

from adapters.config.database_url import DEFAULT_DATABASE, default_database_url, sqlite_path
from adapters.config.settings import (
    MIB,
    AuthSettings,
    ConfigError,
    McpAuth,
    OidcSettings,
    RolePermissions,
    Settings,
    StandaloneOptions,
)
from adapters.config.sources import CONFIG_FILE, ENV_PREFIX, load_settings

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_DATABASE",
    "ENV_PREFIX",
    "MIB",
    "AuthSettings",
    "ConfigError",
    "McpAuth",
    "OidcSettings",
    "RolePermissions",
    "Settings",
    "StandaloneOptions",
    "default_database_url",
    "load_settings",
    "sqlite_path",
]
