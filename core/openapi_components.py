"""The shared components of the per-service OpenAPI documents (core/openapi.py): the
execution and error schemas, the responses every endpoint's operations point at, and the
response headers they carry."""

from __future__ import annotations

from typing import Any

from core.model import ExecutionState


def ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def json_body(schema: Any, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


BASE_SCHEMAS: dict[str, Any] = {
    "ExecutionError": {
        "type": "object",
        "required": ["type", "message"],
        "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
    },
    "ExecutionDetails": {
        "type": "object",
        "required": ["execution_id", "state", "output", "namespace", "workflow"],
        "properties": {
            "execution_id": {"type": "string"},
            "state": {"type": "string", "enum": [state.value for state in ExecutionState]},
            "output": {"description": "the workflow's output (a pause's output while PAUSED)"},
            "namespace": {"type": "string"},
            "workflow": {"type": "string"},
            "status_url": {"type": "string", "description": "where to poll (async calls)"},
            "resume_url": {"type": "string", "description": "where to resume (PAUSED)"},
            "error": ref("schemas", "ExecutionError"),
        },
    },
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
        "additionalProperties": True,
    },
    "ValidationError": {
        "allOf": [
            ref("schemas", "Error"),
            {
                "type": "object",
                "properties": {
                    "errors": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "loc": {
                                    "type": "array",
                                    "items": {"type": ["string", "integer"]},
                                },
                                "msg": {"type": "string"},
                                "type": {"type": "string"},
                            },
                        },
                    }
                },
            },
        ]
    },
}

DETAILS = ref("schemas", "ExecutionDetails")

# Every answer of a run or resume may be a retry's (a repeated Idempotency-Key).
HEADERS: dict[str, Any] = {
    "IdempotentReplayed": {
        "description": "`true` when this answers a retry: a request with the same "
        "Idempotency-Key, target and body as an earlier one, whose execution it reports "
        "(nothing new was started).",
        "schema": {"type": "string", "enum": ["true"]},
    },
}
REPLAYED = {"Idempotent-Replayed": ref("headers", "IdempotentReplayed")}

RESPONSES: dict[str, Any] = {
    "Paused": {
        **json_body(DETAILS, "The workflow paused: resume it at `resume_url`."),
        "headers": REPLAYED,
    },
    "Accepted": {
        **json_body(DETAILS, "Started in the background: poll `status_url`."),
        "headers": REPLAYED,
    },
    "Failed": {
        **json_body(DETAILS, "The workflow failed: details with `error`."),
        "headers": REPLAYED,
    },
    "BadRequest": json_body(ref("schemas", "Error"), "Malformed JSON or unknown mode."),
    "NotFound": json_body(
        ref("schemas", "Error"), "Unknown service, endpoint, execution or version."
    ),
    "Conflict": json_body(
        ref("schemas", "Error"),
        "The name is ambiguous across namespaces (with `namespaces`), or the execution is "
        "not paused (with `state`).",
    ),
    "TooLarge": json_body(ref("schemas", "Error"), "The body is over the size limit."),
    "InvalidInput": json_body(
        {"anyOf": [ref("schemas", "ValidationError"), ref("schemas", "Error")]},
        "The body does not fit the input type, or its Idempotency-Key was sent before with "
        "another body or target (`idempotency_key_reused`).",
    ),
    "KeyReused": json_body(
        ref("schemas", "Error"),
        "The Idempotency-Key was sent before with another body or target "
        "(`idempotency_key_reused`).",
    ),
}
