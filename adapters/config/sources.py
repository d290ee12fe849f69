"""Where settings come from, and `load_settings`, which merges the layers.

Precedence, highest first: CLI flags (the `overrides`), `FLUX_*` environment variables (nested
with `__`), the `[flux]` table of `flux.toml` in the working directory, defaults. Every layer is
flattened to (attribute path -> value, source) and merged, then structured once, so a bad value
is reported with its dotted name and the layer it came from.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
from cattrs.errors import BaseValidationError

from adapters.config.convert import converter, problems
from adapters.config.database_url import default_database_url, normalise_database_url
from adapters.config.names import dotted, inside
from adapters.config.settings import SECRET_PATHS, ConfigError, InvalidSetting, Settings

CONFIG_FILE = "flux.toml"
ENV_PREFIX = "FLUX_"

# path -> (raw value, where it came from)
Layer = dict[tuple[str, ...], tuple[Any, str]]

# A table whose keys are data (role names), not settings: it is one leaf, not a subtree.
_MAPPING_LEAVES = {("auth", "oidc", "role_permissions")}


def _leaves(
    raw: Mapping[str, Any], path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    for key, value in raw.items():
        key_path = (*path, str(key))
        if isinstance(value, Mapping) and inside(key_path) not in _MAPPING_LEAVES:
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


def _env_layer(environ: Mapping[str, str]) -> Layer:
    layer: Layer = {}
    top_level = {a.name for a in attrs.fields(Settings)} | {"security"}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        # Other FLUX_* variables (FLUX_HOME, say) may belong to other tools: only the
        # settings' own top-level names are read here.
        if path[0] not in top_level:
            continue
        layer[inside(path)] = (value, name)
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

    merged: Layer = {}
    for path, value in _leaves(_read_toml(base)):
        merged[inside(path)] = (value, f"{base / CONFIG_FILE} [flux]")
    merged.update(_env_layer(environ))
    for path, value in _leaves(overrides or {}):
        if value is not None:
            merged[path] = (value, "command line")

    if ("database_url",) in merged:
        value, source = merged[("database_url",)]
        if isinstance(value, str) and value.strip():
            merged[("database_url",)] = (normalise_database_url(value.strip(), base), source)
    else:
        merged[("database_url",)] = (default_database_url(base), "default")

    raw = _nest({path: value for path, (value, _) in merged.items()})
    try:
        return converter.structure(raw, Settings)
    except (BaseValidationError, InvalidSetting) as exc:
        found = list(problems(exc))
    path, reason = found[0] if found else ((), "invalid settings")
    source = _source_of(path, merged)
    where = f" (from {source})" if source else ""
    if any(path[: len(secret)] == secret for secret in SECRET_PATHS):
        # The reason would quote the value too ("expected a string, got ...").
        raise ConfigError(f"invalid setting {dotted(path)}{where}: expected a string")
    shown = f" = {merged[path][0]!r}" if path in merged else ""
    raise ConfigError(f"invalid setting {dotted(path)}{shown}{where}: {reason}")


def _source_of(path: tuple[str, ...], merged: Layer) -> str:
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
