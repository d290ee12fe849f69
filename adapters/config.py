"""Settings of the main server and the standalone service process, and where they come from.

Precedence, highest first: CLI flags (the `overrides` of `load_settings`), `FLUX_*` environment
variables (nested with `__`), the `[flux]` table of `flux.toml` in the working directory, defaults.
Every layer is merged into one raw mapping and structured once with cattrs, so a bad value is
reported with its dotted name and the layer it came from.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from attrs import Factory, field, frozen
from cattrs import Converter
from cattrs.errors import (
    AttributeValidationNote,
    BaseValidationError,
    ClassValidationError,
    ForbiddenExtraKeysError,
)

from core.errors import InvalidName
from core.names import validate_service_name

MIB = 1024 * 1024
CONFIG_FILE = "flux.toml"
ENV_PREFIX = "FLUX_"
DEFAULT_DATABASE = Path(".flux") / "flux.db"
RolePermissions = Mapping[str, tuple[str, ...]]


class ConfigError(ValueError):
    """A setting is missing, malformed or out of range; the message names it and its source."""


class _InvalidSetting(ConfigError):
    """Raised by validators; carries the setting's path so `load_settings` can name its source."""

    def __init__(self, path: tuple[str, ...], message: str) -> None:
        super().__init__(f"{_dotted(path)}: {message}")
        self.path = path
        self.reason = message


# Paths of the nested classes inside Settings, so a validator can name the full setting.
_PREFIX: dict[type, tuple[str, ...]] = {}


def _fail(instance: object, name: str, message: str) -> None:
    raise _InvalidSetting((*_PREFIX.get(type(instance), ()), name), message)


def _int_range(low: int, high: int | None = None):
    def check(instance: object, attribute: attrs.Attribute, value: int) -> None:
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            _fail(instance, attribute.name, f"must be {bound}, got {value}")

    return check


def _non_empty(instance: object, attribute: attrs.Attribute, value: str) -> None:
    if not value.strip():
        _fail(instance, attribute.name, "must not be empty")


def _http_url(instance: object, attribute: attrs.Attribute, value: str | None) -> None:
    if value is not None and not re.match(r"^https?://[^/\s]+", value):
        _fail(instance, attribute.name, f"must be an http(s) URL, got {value!r}")


@frozen
class OidcSettings:
    """Bearer tokens issued by an OpenID Connect provider (also the MCP auth fallback)."""

    enabled: bool = False
    issuer: str | None = field(default=None, validator=_http_url)
    audience: str | None = None
    jwks_uri: str | None = field(default=None, validator=_http_url)
    permissions_claim: str = field(default="permissions", validator=_non_empty)
    roles_claim: str | None = None
    # A role found in `roles_claim` grants these permissions.
    role_permissions: RolePermissions = field(factory=dict, hash=False)

    def __attrs_post_init__(self) -> None:
        if self.enabled and not self.issuer:
            _fail(self, "issuer", "is required when OIDC is enabled")


@frozen
class AuthSettings:
    enabled: bool = False
    api_keys: bool = True
    oidc: OidcSettings = Factory(OidcSettings)


def default_database_url(cwd: str | os.PathLike[str] | None = None) -> str:
    base = Path(cwd) if cwd is not None else Path.cwd()
    return _sqlite_url(base.absolute() / DEFAULT_DATABASE)


@frozen
class Settings:
    """Settings of the main server; client commands only read `server_url`."""

    host: str = field(default="127.0.0.1", validator=_non_empty)
    port: int = field(default=8000, validator=_int_range(0, 65535))
    database_url: str = field(factory=default_database_url, validator=_non_empty)
    server_url: str = field(default="http://localhost:8000", validator=_http_url)
    max_body_bytes: int = field(default=MIB, validator=_int_range(1))
    max_upload_bytes: int = field(default=MIB, validator=_int_range(1))
    workers: int = field(default=4, validator=_int_range(1, 1024))
    auth: AuthSettings = Factory(AuthSettings)


_PREFIX.update({Settings: (), AuthSettings: ("auth",), OidcSettings: ("auth", "oidc")})


@frozen
class McpAuth:
    """Where the standalone process validates MCP bearer tokens."""

    issuer: str
    audience: str | None = None
    jwks_uri: str | None = None  # None: discover it from the issuer


@frozen(kw_only=True)
class StandaloneOptions:
    """Everything `flux service start` hands to the standalone service process."""

    settings: Settings = Factory(Settings)
    service: str = field()
    host: str = field(default="0.0.0.0", validator=_non_empty)
    port: int = field(default=9000, validator=_int_range(0, 65535))
    server_url: str = field(
        default=Factory(lambda self: self.settings.server_url, takes_self=True),
        validator=_http_url,
    )
    cache_ttl: float = field(default=60.0)
    mcp: bool | None = None  # None: use the service's stored mcp_enabled
    mcp_issuer: str | None = field(default=None, validator=_http_url)
    mcp_audience: str | None = None
    mcp_jwks_uri: str | None = field(default=None, validator=_http_url)
    mcp_base_url: str | None = field(default=None, validator=_http_url)
    mcp_forward_token: bool = False  # pass MCP callers' tokens on to the main server
    upstream_timeout: float = field(default=300.0)

    @service.validator
    def _check_service(self, attribute: attrs.Attribute, value: str) -> None:
        try:
            validate_service_name(value)
        except InvalidName as exc:
            raise _InvalidSetting(("service",), exc.message) from None

    @cache_ttl.validator
    def _check_ttl(self, attribute: attrs.Attribute, value: float) -> None:
        if not value >= 0:
            _fail(self, attribute.name, f"must be zero or more seconds, got {value}")

    @upstream_timeout.validator
    def _check_timeout(self, attribute: attrs.Attribute, value: float) -> None:
        if not value > 0:
            _fail(self, attribute.name, f"must be more than zero seconds, got {value}")

    def mcp_auth(self) -> McpAuth | None:
        """The token check for `/mcp`: the `--mcp-*` flags, else the server's OIDC settings
        (as the seed's fallback says), else none (MCP open)."""
        oidc = self.settings.auth.oidc
        if self.mcp_issuer:
            return McpAuth(self.mcp_issuer, self.mcp_audience, self.mcp_jwks_uri)
        if oidc.enabled and oidc.issuer:
            return McpAuth(
                oidc.issuer,
                self.mcp_audience or oidc.audience,
                self.mcp_jwks_uri or oidc.jwks_uri,
            )
        return None


# ---------------------------------------------------------------------------------------------
# Database URLs


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def sqlite_path(database_url: str) -> str | None:
    """The file path (or `:memory:`) of a `sqlite:///` URL, None for any other database.

    The `sqlite+aiosqlite://` spelling of older settings is still read the same way."""
    match = re.match(r"^sqlite(\+aiosqlite)?://(/?)(.*)$", database_url)
    if not match:
        return None
    rest = match.group(3)
    return rest or ":memory:"


def _normalise_database_url(url: str, cwd: Path) -> str:
    """Relative SQLite paths are anchored at the working directory the settings were loaded
    in, so the server does not depend on where it later changes directory."""
    if "://" not in url and url != ":memory:":
        return _sqlite_url(cwd / Path(url).expanduser())
    path = sqlite_path(url)
    if path is None or path == ":memory:":
        return url
    return _sqlite_url(cwd / Path(path).expanduser())


# ---------------------------------------------------------------------------------------------
# Structuring raw values (strings from the environment, TOML values, click values)

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _to_bool(value: Any, _: type) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"expected true or false, got {value!r}")


def _to_int(value: Any, _: type) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    raise ValueError(f"expected an integer, got {value!r}")


def _to_float(value: Any, _: type) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ValueError(f"expected a number, got {value!r}")


def _to_str(value: Any, _: type) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"expected a string, got {value!r}")


def _to_optional_str(value: Any, _: type) -> str | None:
    # An empty environment variable is the only way to unset a value there.
    if value is None or value == "":
        return None
    return _to_str(value, str)


def _to_role_permissions(value: Any, _: type) -> RolePermissions:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(
                'expected a JSON object like {"admin": ["*"]}, got ' + repr(value)
            ) from None
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a table of role = [permissions], got {value!r}")
    result: dict[str, tuple[str, ...]] = {}
    for role, perms in value.items():
        if isinstance(perms, str):
            perms = [perms]
        if not isinstance(perms, (list, tuple)) or not all(isinstance(p, str) for p in perms):
            raise ValueError(f"role {role!r}: expected a list of permission strings")
        result[str(role)] = tuple(perms)
    return result


_converter = Converter(forbid_extra_keys=True)
_converter.register_structure_hook(bool, _to_bool)
_converter.register_structure_hook(int, _to_int)
_converter.register_structure_hook(float, _to_float)
_converter.register_structure_hook(str, _to_str)
_converter.register_structure_hook(str | None, _to_optional_str)
_converter.register_structure_hook_func(lambda t: t == RolePermissions, _to_role_permissions)


def _error_paths(exc: BaseException, path: tuple[str, ...]):
    """Flatten a cattrs validation error into (path, reason) pairs."""
    if isinstance(exc, ForbiddenExtraKeysError):
        for key in sorted(exc.extra_fields):
            yield (*path, key), "unknown setting"
    elif isinstance(exc, ClassValidationError):
        with_notes, others = exc.group_exceptions()
        for sub, note in with_notes:
            assert isinstance(note, AttributeValidationNote)
            yield from _error_paths(sub, (*path, note.name))
        for sub in others:
            yield from _error_paths(sub, path)
    elif isinstance(exc, BaseValidationError):
        for sub in exc.exceptions:
            yield from _error_paths(sub, path)
    elif isinstance(exc, _InvalidSetting):
        yield exc.path, exc.reason
    else:
        yield path, str(exc)


# ---------------------------------------------------------------------------------------------
# Layers

# Outside names differ from the attribute names in one place: the seed's `security.auth`.
_OUTSIDE = {("auth",): ("security", "auth")}


def _outside(path: tuple[str, ...]) -> tuple[str, ...]:
    for inside, outside in _OUTSIDE.items():
        if path[: len(inside)] == inside:
            return outside + path[len(inside) :]
    return path


def _inside(path: tuple[str, ...]) -> tuple[str, ...]:
    for inside, outside in _OUTSIDE.items():
        if path[: len(outside)] == outside:
            return inside + path[len(outside) :]
    return path


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(_outside(path))


def _leaves(raw: Mapping[str, Any], path: tuple[str, ...] = ()):
    for key, value in raw.items():
        key_path = (*path, str(key))
        if isinstance(value, Mapping) and _inside(key_path) != ("auth", "oidc", "role_permissions"):
            yield from _leaves(value, key_path)
        else:
            yield key_path, value


def _read_toml(cwd: Path) -> dict[str, Any]:
    file = cwd / CONFIG_FILE
    try:
        with file.open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {file}: {exc}") from None
    flux = document.get("flux", {})
    if not isinstance(flux, Mapping):
        raise ConfigError(f"{file}: [flux] must be a table")
    return dict(flux)


def _env_layer(environ: Mapping[str, str]) -> dict[tuple[str, ...], tuple[Any, str]]:
    layer: dict[tuple[str, ...], tuple[Any, str]] = {}
    top_level = {a.name for a in attrs.fields(Settings)} | {"security"}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        # FLUX_API_KEY and friends belong to other parts of the CLI, not to these settings.
        if path[0] not in top_level:
            continue
        layer[_inside(path)] = (value, name)
    return layer


def _nest(leaves: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path, value in leaves.items():
        node = root
        for key in path[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                # A scalar where a table belongs: let cattrs report it at that key.
                break
            node = child
        else:
            node[path[-1]] = value
    return root


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Settings:
    """Merge the layers and build `Settings`; raises `ConfigError` naming the bad setting.

    `overrides` use attribute names (`port`, `database_url`, `auth`: {...}); None values are
    ignored, so unset click options can be passed as they are.
    """
    base = Path(cwd) if cwd is not None else Path.cwd()
    base = base.absolute()
    environ = os.environ if environ is None else environ

    merged: dict[tuple[str, ...], tuple[Any, str]] = {}
    for path, value in _leaves(_read_toml(base)):
        merged[_inside(path)] = (value, f"{base / CONFIG_FILE} [flux]")
    merged.update(_env_layer(environ))
    for path, value in _leaves(overrides or {}):
        if value is not None:
            merged[path] = (value, "command line")

    if ("database_url",) in merged:
        value, source = merged[("database_url",)]
        if isinstance(value, str) and value.strip():
            merged[("database_url",)] = (_normalise_database_url(value.strip(), base), source)
    else:
        merged[("database_url",)] = (default_database_url(base), "default")

    raw = _nest({path: value for path, (value, _) in merged.items()})
    try:
        return _converter.structure(raw, Settings)
    except (BaseValidationError, _InvalidSetting) as exc:
        problems = list(_error_paths(exc, ()))
    path, reason = problems[0] if problems else ((), "invalid settings")
    source = _source_of(path, merged)
    value = merged.get(path, (None, ""))[0]
    shown = f" = {value!r}" if path in merged else ""
    where = f" (from {source})" if source else ""
    raise ConfigError(f"invalid setting {_dotted(path)}{shown}{where}: {reason}")


def _source_of(path: tuple[str, ...], merged: Mapping[tuple[str, ...], tuple[Any, str]]) -> str:
    if path in merged:
        return merged[path][1]
    # An unknown table: name the source of a value inside it.
    for key, (_, source) in merged.items():
        if key[: len(path)] == path:
            return source
    # A cross-field error (e.g. OIDC enabled without issuer): name a neighbour's source.
    for key, (_, source) in merged.items():
        if path and key[: len(path) - 1] == path[:-1] and source != "default":
            return source
    return ""
