"""JSON Schema checks for MCP tool arguments, with `jsonschema` (the core takes them as a
function, so it stays free of the library)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema

from core.mcp_tools import SchemaViolation

_PROPERTY_MESSAGES = {"required": "field required", "additionalProperties": "unexpected field"}


def violations(schema: Mapping[str, Any], value: Any) -> Iterator[SchemaViolation]:
    """Every way `value` misses `schema` (Draft 2020-12; formats are not asserted)."""
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
