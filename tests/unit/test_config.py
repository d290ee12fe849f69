"""Settings precedence and validation: flags > FLUX_* env > flux.toml [flux] > defaults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adapters.config import (
    MIB,
    ConfigError,
    McpAuth,
    Settings,
    StandaloneOptions,
    load_settings,
    sqlite_path,
)

TOML = """
[flux]
port = 8100
host = "0.0.0.0"
server_url = "http://toml:8000"
workers = 8
database_url = "data/flux.db"

[flux.security.auth]
enabled = true
api_keys = false

[flux.security.auth.oidc]
enabled = true
issuer = "https://idp.example.com/realms/r"
audience = "flux-api"
roles_claim = "roles"

[flux.security.auth.oidc.role_permissions]
admin = ["*"]
viewer = "workflow:*:*:read"
"""


def write_toml(cwd: Path, text: str = TOML) -> None:
    (cwd / "flux.toml").write_text(text)


def test_defaults_without_file_or_env(tmp_path: Path) -> None:
    settings = load_settings({}, environ={}, cwd=tmp_path)
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.server_url == "http://localhost:8000"
    assert settings.max_body_bytes == settings.max_upload_bytes == MIB
    assert settings.workers == max(2, os.cpu_count() or 1)
    assert settings.isolation == "process" and settings.registration_timeout == 10.0
    assert settings.auth.enabled is False and settings.auth.api_keys is True
    assert settings.auth.oidc.enabled is False
    assert settings.auth.oidc.permissions_claim == "permissions"
    assert sqlite_path(settings.database_url) == str(tmp_path / ".flux" / "flux.db")


def test_toml_layer_is_read_with_nested_security_tables(tmp_path: Path) -> None:
    write_toml(tmp_path)
    settings = load_settings({}, environ={}, cwd=tmp_path)
    assert (settings.host, settings.port, settings.workers) == ("0.0.0.0", 8100, 8)
    assert settings.server_url == "http://toml:8000"
    assert sqlite_path(settings.database_url) == str(tmp_path / "data" / "flux.db")
    assert settings.auth.enabled is True and settings.auth.api_keys is False
    oidc = settings.auth.oidc
    assert oidc.issuer == "https://idp.example.com/realms/r"
    assert oidc.audience == "flux-api"
    assert oidc.roles_claim == "roles"
    assert dict(oidc.role_permissions) == {"admin": ("*",), "viewer": ("workflow:*:*:read",)}


def test_env_beats_toml_and_flags_beat_env(tmp_path: Path) -> None:
    write_toml(tmp_path)
    environ = {
        "FLUX_PORT": "8200",
        "FLUX_HOST": "10.0.0.1",
        "FLUX_SECURITY__AUTH__ENABLED": "false",
        "FLUX_SECURITY__AUTH__OIDC__AUDIENCE": "from-env",
        "FLUX_DATABASE_URL": "sqlite:////var/lib/flux.db",
    }
    settings = load_settings({"port": 8300, "host": None}, environ=environ, cwd=tmp_path)
    assert settings.port == 8300  # flag
    assert settings.host == "10.0.0.1"  # env: the None flag does not count
    assert settings.workers == 8  # toml
    assert settings.auth.enabled is False  # env over toml, nested with __
    assert settings.auth.oidc.audience == "from-env"
    assert settings.auth.oidc.issuer == "https://idp.example.com/realms/r"  # toml kept
    assert settings.database_url == "sqlite:////var/lib/flux.db"


def test_nested_overrides_use_attribute_names(tmp_path: Path) -> None:
    settings = load_settings(
        {"auth": {"enabled": True, "oidc": {"permissions_claim": "scp"}}}, environ={}, cwd=tmp_path
    )
    assert settings.auth.enabled is True
    assert settings.auth.oidc.permissions_claim == "scp"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("1", True), ("YES", True), ("on", True), ("false", False), ("0", False)],
)
def test_env_booleans(tmp_path: Path, text: str, expected: bool) -> None:
    settings = load_settings({}, environ={"FLUX_SECURITY__AUTH__ENABLED": text}, cwd=tmp_path)
    assert settings.auth.enabled is expected


def test_env_role_permissions_as_json_and_empty_string_unsets(tmp_path: Path) -> None:
    write_toml(tmp_path)
    environ = {
        "FLUX_SECURITY__AUTH__OIDC__ROLE_PERMISSIONS": '{"ops": ["service:*:admin"]}',
        "FLUX_SECURITY__AUTH__OIDC__AUDIENCE": "",
    }
    oidc = load_settings({}, environ=environ, cwd=tmp_path).auth.oidc
    assert dict(oidc.role_permissions) == {"ops": ("service:*:admin",)}
    assert oidc.audience is None


def test_unrelated_flux_variables_are_ignored(tmp_path: Path) -> None:
    environ = {"FLUX_HOME": "/x", "FLUX_": "1", "OTHER": "1"}
    assert load_settings({}, environ=environ, cwd=tmp_path) == load_settings(
        {}, environ={}, cwd=tmp_path
    )


# --- api_key: the process's own credentials, a secret --------------------------------------


def test_api_key_follows_the_same_precedence(tmp_path: Path) -> None:
    assert load_settings({}, environ={}, cwd=tmp_path).api_key is None
    write_toml(tmp_path, '[flux]\napi_key = "from-toml"\n')
    assert load_settings({}, environ={}, cwd=tmp_path).api_key == "from-toml"
    environ = {"FLUX_API_KEY": "from-env"}
    assert load_settings({}, environ=environ, cwd=tmp_path).api_key == "from-env"
    flagged = load_settings({"api_key": "from-flag"}, environ=environ, cwd=tmp_path)
    assert flagged.api_key == "from-flag"
    # An empty variable unsets it, as for every optional setting.
    assert load_settings({}, environ={"FLUX_API_KEY": ""}, cwd=tmp_path).api_key is None


def test_api_key_is_kept_out_of_reprs(tmp_path: Path) -> None:
    settings = load_settings({}, environ={"FLUX_API_KEY": "flux_s3cret"}, cwd=tmp_path)
    options = StandaloneOptions(settings=settings, service="billing")
    assert options.settings.api_key == "flux_s3cret"
    assert "flux_s3cret" not in repr(settings)
    assert "flux_s3cret" not in repr(options)


@pytest.mark.parametrize(
    "toml",
    ["[flux]\napi_key = 12345678\n", '[flux.api_key]\nnested = "12345678"\n'],
)
def test_bad_api_key_error_does_not_show_the_value(tmp_path: Path, toml: str) -> None:
    write_toml(tmp_path, toml)
    with pytest.raises(ConfigError) as caught:
        load_settings({}, environ={}, cwd=tmp_path)
    message = str(caught.value)
    assert "api_key" in message and "flux.toml" in message
    assert "12345678" not in message


def test_default_database_follows_the_working_directory(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    assert (
        load_settings({}, environ={}, cwd=one).database_url
        != load_settings({}, environ={}, cwd=two).database_url
    )


def test_relative_sqlite_url_is_anchored_at_cwd(tmp_path: Path) -> None:
    settings = load_settings({"database_url": "sqlite:///x/y.db"}, environ={}, cwd=tmp_path)
    assert sqlite_path(settings.database_url) == str(tmp_path / "x" / "y.db")
    assert sqlite_path("postgresql://u@h/db") is None
    assert sqlite_path("sqlite://") == ":memory:"


@pytest.mark.parametrize(
    ("environ", "fragments"),
    [
        ({"FLUX_PORT": "eighty"}, ["port", "'eighty'", "FLUX_PORT", "integer"]),
        ({"FLUX_PORT": "70000"}, ["port", "FLUX_PORT", "between 0 and 65535"]),
        ({"FLUX_WORKERS": "0"}, ["workers", "FLUX_WORKERS", "between 1 and 1024"]),
        ({"FLUX_SECURITY__AUTH__ENABLED": "maybe"}, ["security.auth.enabled", "true or false"]),
        ({"FLUX_SERVER_URL": "localhost:8000"}, ["server_url", "http(s) URL"]),
        ({"FLUX_SECURITY__AUTH__TYPO": "1"}, ["security.auth.typo", "unknown setting"]),
        (
            {"FLUX_SECURITY__AUTH__OIDC__ENABLED": "true"},
            ["security.auth.oidc.issuer", "required", "FLUX_SECURITY__AUTH__OIDC__ENABLED"],
        ),
        (
            {"FLUX_SECURITY__AUTH__OIDC__ROLE_PERMISSIONS": "admin"},
            ["security.auth.oidc.role_permissions", "JSON object"],
        ),
    ],
)
def test_bad_env_values_name_the_setting_and_the_variable(
    tmp_path: Path, environ: dict[str, str], fragments: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({}, environ=environ, cwd=tmp_path)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message


def test_bad_toml_value_names_the_file(tmp_path: Path) -> None:
    write_toml(tmp_path, '[flux]\nport = "high"\n')
    with pytest.raises(ConfigError, match=r"port = 'high' \(from .*flux\.toml \[flux\]\)"):
        load_settings({}, environ={}, cwd=tmp_path)


def test_unknown_toml_key_is_refused(tmp_path: Path) -> None:
    write_toml(tmp_path, "[flux]\nprot = 8000\n")
    with pytest.raises(ConfigError, match="prot.*unknown setting"):
        load_settings({}, environ={}, cwd=tmp_path)


def test_broken_toml_is_a_config_error(tmp_path: Path) -> None:
    write_toml(tmp_path, "[flux\nport = 1\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings({}, environ={}, cwd=tmp_path)


def test_bad_flag_value_names_the_command_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="from command line"):
        load_settings({"port": -1}, environ={}, cwd=tmp_path)


def test_settings_are_frozen_values() -> None:
    settings = Settings(database_url="sqlite:///x.db")
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]
    assert settings == Settings(database_url="sqlite:///x.db")


# --- StandaloneOptions ------------------------------------------------------------------------


def oidc_settings(tmp_path: Path) -> Settings:
    write_toml(tmp_path)
    return load_settings({}, environ={}, cwd=tmp_path)


def test_standalone_defaults_take_server_url_from_settings(tmp_path: Path) -> None:
    settings = load_settings({"server_url": "http://flux:8000"}, environ={}, cwd=tmp_path)
    options = StandaloneOptions(settings=settings, service="billing")
    assert (options.host, options.port, options.cache_ttl) == ("0.0.0.0", 9000, 60.0)
    assert options.server_url == "http://flux:8000"
    assert options.mcp is None and options.upstream_timeout == 300.0
    assert options.mcp_auth() is None


def test_standalone_refuses_bad_values() -> None:
    with pytest.raises(ConfigError, match="invalid service name"):
        StandaloneOptions(service="Billing!")
    with pytest.raises(ConfigError, match="cache_ttl"):
        StandaloneOptions(service="billing", cache_ttl=-1)
    with pytest.raises(ConfigError, match="upstream_timeout"):
        StandaloneOptions(service="billing", upstream_timeout=0)
    with pytest.raises(ConfigError, match="port"):
        StandaloneOptions(service="billing", port=70000)


def test_mcp_auth_flags_win_over_oidc_settings(tmp_path: Path) -> None:
    options = StandaloneOptions(
        settings=oidc_settings(tmp_path),
        service="billing",
        mcp_issuer="https://other.example.com",
        mcp_audience="billing-api",
    )
    assert options.mcp_auth() == McpAuth("https://other.example.com", "billing-api", None)


def test_mcp_auth_falls_back_to_oidc_settings(tmp_path: Path) -> None:
    options = StandaloneOptions(settings=oidc_settings(tmp_path), service="billing")
    assert options.mcp_auth() == McpAuth("https://idp.example.com/realms/r", "flux-api", None)
