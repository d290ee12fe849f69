"""Checking a JSON value against a JSON schema: the one validation path of workflow inputs.

The HTTP routes, the MCP tools and the published OpenAPI documents all describe an input by
the JSON schema stored with the workflow, so all of them validate by that schema, strictly
(`"3"` is not a number), before anything is stored. Draft 2020-12; formats are not asserted.
jsonschema is deterministic and fetches nothing here, so the core may use it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema
from attrs import frozen

from core.errors import InputValidationError


@frozen
class SchemaViolation:
    """One way a value misses a JSON schema: `path` to the offending field (a missing or
    unexpected field included), a message, and the failing keyword (`type`, `required`...)."""

    path: tuple[str | int, ...]
    message: str
    kind: str


def check(schema: Mapping[str, Any], value: Any, loc: tuple[str | int, ...] = ()) -> None:
    """Raise `InputValidationError` naming every offending field (at most five in the message,
    all of them in `errors: [{"loc", "msg", "type"}]`, the shape of the HTTP 422)."""
    found: dict[tuple[str, ...], dict[str, Any]] = {}
    for violation in violations(schema, value):
        path = [*loc, *violation.path]
        found.setdefault(
            (*map(str, path), violation.kind),
            {"loc": path, "msg": violation.message, "type": violation.kind},
        )
    if not found:
        return
    errors = [found[key] for key in sorted(found)]
    shown = [f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in errors[:5]]
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    raise InputValidationError("; ".join(shown) + more, errors=errors)


_PROPERTY_MESSAGES = {"required": "field required", "additionalProperties": "unexpected field"}


def violations(schema: Mapping[str, Any], value: Any) -> Iterator[SchemaViolation]:
    """Every way `value` misses `schema`."""
    for error in jsonschema.Draft202012Validator(schema).iter_errors(value):
        path = tuple(error.path)
        names = _named_properties(error)
        if not names:
            yield SchemaViolation(path, error.message, str(error.validator))
        for name in names:
            yield SchemaViolation(
                (*path, name), _PROPERTY_MESSAGES[error.validator], str(error.validator)
            )


def _named_properties(error: jsonschema.ValidationError) -> list[str]:
    # `required` and `additionalProperties` errors sit on the parent object; naming the absent
    # or unexpected field is far more useful to a caller.
    if not isinstance(error.instance, Mapping):
        return []
    if error.validator == "required" and isinstance(error.validator_value, list):
        return [name for name in error.validator_value if name not in error.instance]
    if error.validator == "additionalProperties" and error.validator_value is False:
        if error.schema.get("patternProperties"):
            return []
        known = error.schema.get("properties", {})
        return [name for name in error.instance if name not in known]
    return []
