"""The settings values: frozen attrs classes, validated when built, whatever built them.

A validator raises `InvalidSetting` with the setting's path, so the loader can say which layer
(flag, environment variable, flux.toml) the bad value came from.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from attrs import Factory, field, frozen

from adapters.config.database_url import default_database_url
from adapters.config.names import dotted
from core.errors import InvalidName
from core.names import validate_service_name

MIB = 1024 * 1024
RolePermissions = Mapping[str, tuple[str, ...]]
Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


class ConfigError(ValueError):
    """A setting is missing, malformed or out of range; the message names it and its source."""


class InvalidSetting(ConfigError):
    """Raised by validators; carries the setting's path so `load_settings` can name its source."""

    def __init__(self, path: tuple[str, ...], message: str) -> None:
        super().__init__(f"{dotted(path)}: {message}")
        self.path = path
        self.reason = message


# Paths of the nested classes inside Settings, so a validator can name the full setting.
_PREFIX: dict[type, tuple[str, ...]] = {}


def _fail(instance: object, name: str, message: str) -> None:
    raise InvalidSetting((*_PREFIX.get(type(instance), ()), name), message)


def _int_range(low: int, high: int | None = None) -> Validator:
    def check(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            _fail(instance, attribute.name, f"must be {bound}, got {value}")

    return check


def _seconds(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0 < value <= 86_400:
        _fail(instance, attribute.name, f"must be a number of seconds above 0, got {value}")


def _seconds_or_zero(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0 <= value <= 86_400:
        _fail(instance, attribute.name, f"must be 0 (none) or seconds up to 86400, got {value}")


def _one_of(*choices: str) -> Validator:
    def check(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
        if value not in choices:
            _fail(instance, attribute.name, f"must be one of {', '.join(choices)}, got {value!r}")

    return check


def default_workers() -> int:
    """One worker process per CPU, and at least two: one busy worker never leaves none."""
    return max(2, os.cpu_count() or 1)


def _non_empty(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not value.strip():
        _fail(instance, attribute.name, "must not be empty")


def _http_url(instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and not re.match(r"^https?://[^/\s]+", value):
        _fail(instance, attribute.name, f"must be an http(s) URL, got {value!r}")


@frozen
class OidcSettings:
    """Bearer tokens issued by an OpenID Connect provider (also the MCP auth fallback)."""

    enabled: bool = False
    issuer: str | None = field(default=None, validator=_http_url)
    audience: str | None = None
    jwks_uri: str | None = field(default=None, validator=_http_url)
    # RFC 7662 introspection, for providers that issue opaque (non-JWT) access tokens.
    introspection_endpoint: str | None = field(default=None, validator=_http_url)
    introspection_client_id: str | None = None
    introspection_client_secret: str | None = field(default=None, repr=False)
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


def _origins(instance: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    for origin in value:
        if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
            _fail(instance, attribute.name, f"an origin is scheme://host[:port], got {origin!r}")


def _hosts(instance: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    for host in value:
        if not re.fullmatch(r"[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:.]+", host):
            _fail(instance, attribute.name, f"a host name or address, got {host!r}")


def _webhook_secret(instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and not re.fullmatch(r"whsec_[A-Za-z0-9+/]+={0,2}", value):
        _fail(instance, attribute.name, "must be written whsec_<base64>")


@frozen
class CorsSettings:
    """Browsers on these origins may call the service routes ("*": any); none by default."""

    allowed_origins: tuple[str, ...] = field(default=(), validator=_origins)


@frozen
class CallbackSettings:
    """Completion callbacks (`Flux-Callback-Url`): only these hosts are called, and every
    delivery is signed with `secret`. Without both, a callback URL is refused."""

    secret: str | None = field(default=None, repr=False, validator=_webhook_secret)
    allowed_hosts: tuple[str, ...] = field(default=(), validator=_hosts)

    @property
    def enabled(self) -> bool:
        return self.secret is not None and bool(self.allowed_hosts)


@frozen
class Settings:
    """Settings of the main server, its workers, the standalone process and client commands."""

    host: str = field(default="127.0.0.1", validator=_non_empty)
    port: int = field(default=8000, validator=_int_range(0, 65535))
    database_url: str = field(factory=default_database_url, validator=_non_empty)
    server_url: str = field(default="http://localhost:8000", validator=_http_url)
    max_body_bytes: int = field(default=MIB, validator=_int_range(1))
    max_upload_bytes: int = field(default=MIB, validator=_int_range(1))
    # Worker processes the server starts to run workflow code (isolation "process"); with
    # isolation "none", the threads of the in-process runtime.
    workers: int = field(factory=default_workers, validator=_int_range(1, 1024))
    isolation: str = field(default="process", validator=_one_of("process", "none"))
    # Seconds in-flight calls get to finish when the server is asked to stop.
    shutdown_grace: float = field(default=10.0, validator=_seconds)
    auth: AuthSettings = Factory(AuthSettings)
    # How long reading an uploaded module's workflows (in a sandbox process) may take.
    registration_timeout: float = field(default=10.0, validator=_seconds)
    # This process's own credentials towards a main server (client commands, the standalone
    # process). A secret: kept out of reprs, and `load_settings` never echoes its value. Last,
    # so positional construction of the older fields is unchanged.
    api_key: str | None = field(default=None, repr=False)
    # Seconds a client command waits for the server's answer (`--timeout`); a sync run or
    # resume waits as long as the run takes unless `--timeout` is given.
    client_timeout: float = field(default=30.0, validator=_seconds)
    # Seconds a sync run or resume waits at most before it answers 202 with the execution in its
    # current state and a `status_url` (the execution goes on); 0 is no bound.
    max_sync_wait: float = field(default=300.0, validator=_seconds_or_zero)
    # Seconds an `Idempotency-Key` is remembered: within it a retry answers the first call.
    idempotency_window: float = field(default=86_400.0, validator=_seconds)
    # Seconds an execution may be RUNNING (paused time not counted) unless its workflow says
    # otherwise with `@workflow.with_options(timeout=...)`.
    execution_timeout: float = field(default=3600.0, validator=_seconds)
    cors: CorsSettings = Factory(CorsSettings)
    callbacks: CallbackSettings = Factory(CallbackSettings)
    # Days finished executions (and expired idempotency keys) are kept; 0 keeps everything.
    retention_days: int = field(default=30, validator=_int_range(0, 36_500))


_PREFIX.update(
    {
        Settings: (),
        AuthSettings: ("auth",),
        OidcSettings: ("auth", "oidc"),
        CorsSettings: ("cors",),
        CallbackSettings: ("callbacks",),
    }
)

# Settings whose values must never be shown, by path.
SECRET_PATHS = frozenset({("api_key",), ("callbacks", "secret")})


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
    def _check_service(self, attribute: attrs.Attribute[Any], value: str) -> None:
        try:
            validate_service_name(value)
        except InvalidName as exc:
            raise InvalidSetting(("service",), exc.message) from None

    @cache_ttl.validator
    def _check_ttl(self, attribute: attrs.Attribute[Any], value: float) -> None:
        if not value >= 0:
            _fail(self, attribute.name, f"must be zero or more seconds, got {value}")

    @upstream_timeout.validator
    def _check_timeout(self, attribute: attrs.Attribute[Any], value: float) -> None:
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
