"""Raw values (strings from the environment, TOML values, click values) to `Settings`.

One cattrs converter with strict hooks: the environment only has strings, so "8000" is an int
here and "yes" a bool, but a TOML `port = "high"` is refused rather than guessed at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from cattrs import Converter
from cattrs.errors import (
    AttributeValidationNote,
    BaseValidationError,
    ClassValidationError,
    ForbiddenExtraKeysError,
)

from adapters.config.settings import InvalidSetting, RolePermissions

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


def _to_names(value: Any, _: type) -> tuple[str, ...]:
    """A list of strings; the environment writes one as `a,b,c`."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, (list, tuple)) and all(isinstance(part, str) for part in value):
        return tuple(value)
    raise ValueError(f"expected a list of strings, got {value!r}")


converter = Converter(forbid_extra_keys=True)
converter.register_structure_hook(bool, _to_bool)
converter.register_structure_hook(int, _to_int)
converter.register_structure_hook(float, _to_float)
converter.register_structure_hook(str, _to_str)
converter.register_structure_hook(str | None, _to_optional_str)
converter.register_structure_hook_func(lambda t: t == RolePermissions, _to_role_permissions)
converter.register_structure_hook_func(lambda t: t == tuple[str, ...], _to_names)


def problems(
    exc: BaseException, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], str]]:
    """Flatten a cattrs validation error into (attribute path, reason) pairs."""
    if isinstance(exc, ForbiddenExtraKeysError):
        for key in sorted(exc.extra_fields):
            yield (*path, key), "unknown setting"
    elif isinstance(exc, ClassValidationError):
        with_notes, others = exc.group_exceptions()
        for sub, note in with_notes:
            assert isinstance(note, AttributeValidationNote)
            yield from problems(sub, (*path, note.name))
        for sub in others:
            yield from problems(sub, path)
    elif isinstance(exc, BaseValidationError):
        for sub in exc.exceptions:
            yield from problems(sub, path)
    elif isinstance(exc, InvalidSetting):
        yield exc.path, exc.reason
    else:
        yield path, str(exc)
