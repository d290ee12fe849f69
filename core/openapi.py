"""The OpenAPI 3.1 document of one service's resolved endpoints, for client generators.

Input schemas are JSON Schema 2020-12 (what pydantic emits), which OpenAPI 3.1 takes as is,
except that their local `#/$defs/...` refs would point at the OpenAPI document's root: the
definitions move to `components/schemas` and every ref is rewritten to match.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from core.model import Endpoint, Resolution
from core.openapi_components import (
    BASE_SCHEMAS,
    DETAILS,
    HEADERS,
    REPLAYED,
    RESPONSES,
    json_body,
    ref,
)
from core.stream import MAX_EVENT_ID

MODES = ("sync", "async", "stream")

_COMPONENT_NAME = re.compile(r"[^A-Za-z0-9._-]")
_DEF_PREFIXES = ("#/$defs/", "#/definitions/")


_PARAMETERS: dict[str, Any] = {
    "version": {
        "name": "version",
        "in": "query",
        "required": False,
        "description": "Pin a workflow version (default: the latest).",
        "schema": {"type": "integer", "minimum": 1},
    },
    "detailed": {
        "name": "detailed",
        "in": "query",
        "required": False,
        "description": "Answer with the execution details instead of the raw output.",
        "schema": {"type": "boolean", "default": False},
    },
    "idempotency_key": {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "Makes the call safe to retry: a later call with the same key, target "
        "and body (within the server's idempotency window, 24 hours by default) starts nothing "
        "and is answered with the first call's execution. The same key with another body or "
        "target is a 422. 1 to 255 visible ASCII characters, else a 400.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
    },
    "callback_url": {
        "name": "Flux-Callback-Url",
        "in": "header",
        "required": False,
        "description": "Where the execution's details are POSTed, signed (Standard Webhooks), "
        "each time it completes, fails, is cancelled or pauses. Its host must be one the server "
        "allows (callbacks.allowed_hosts); another URL, or callbacks not configured, is a 400 "
        "and nothing runs.",
        "schema": {"type": "string", "format": "uri", "maxLength": 2048},
    },
    "execution_id": {
        "name": "execution_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    },
    "last_event_id": {
        "name": "Last-Event-ID",
        "in": "header",
        "required": False,
        "description": "The `id` of the last event already received: only later events are "
        "sent (default: the whole log). Anything but an integer in range is a 400.",
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_EVENT_ID},
    },
}


def service_openapi(
    resolution: Resolution, server_url_prefix: str = "/services/{name}"
) -> dict[str, Any]:
    """One POST path per endpoint and mode, resume and status paths, with input schemas.

    `server_url_prefix` is where the endpoints hang (`{name}` is the service's name): the main
    server's `/services/{name}`, or `""` for a standalone process's root routes.
    """
    service = resolution.service
    prefix = server_url_prefix.replace("{name}", service.name).rstrip("/")
    schemas: dict[str, Any] = copy.deepcopy(BASE_SCHEMAS)
    paths: dict[str, Any] = {}
    for endpoint in resolution.endpoints:
        input_schema = _add_input_schema(endpoint, schemas)
        paths.update(_endpoint_paths(endpoint, input_schema))

    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{service.name} workflow service",
            "version": f"{service.revision}.{resolution.catalog_revision}",
            "description": _description(resolution),
        },
        "servers": [{"url": prefix or "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": copy.deepcopy(RESPONSES),
            "parameters": copy.deepcopy(_PARAMETERS),
            "headers": copy.deepcopy(HEADERS),
        },
    }


def _description(resolution: Resolution) -> str:
    lines = [
        f"Workflows exposed by service '{resolution.service.name}' "
        f"(service revision {resolution.service.revision}, "
        f"catalog revision {resolution.catalog_revision})."
    ]
    if resolution.collisions:
        names = ", ".join(c.name for c in resolution.collisions)
        lines.append(f"Ambiguous names, answered with 409 and left out here: {names}.")
    return "\n\n".join(lines)


def _endpoint_paths(endpoint: Endpoint, input_schema: Any) -> dict[str, Any]:
    name = endpoint.name
    info = endpoint.workflow
    summary = info.description.strip().splitlines()[0] if info.description.strip() else None
    tag = [name]
    input_body = {
        "required": input_schema != {},
        "content": {"application/json": {"schema": input_schema}},
    }
    resume_body = {
        "required": False,
        "content": {"application/json": {"schema": {"description": "the resume value"}}},
    }

    def operation(op_id: str, text: str, body: Any, responses: dict[str, Any], params: list):
        op: dict[str, Any] = {
            "operationId": op_id,
            "tags": tag,
            "summary": text,
            "parameters": params,
            "responses": responses,
        }
        if summary:
            op["description"] = f"{info.ref} v{info.version}: {summary}"
        if body is not None:
            op["requestBody"] = body
        return op

    def run_responses(mode: str, resume: bool) -> dict[str, Any]:
        common = {
            "400": ref("responses", "BadRequest"),
            "404": ref("responses", "NotFound"),
            "409": ref("responses", "Conflict"),
            "413": ref("responses", "TooLarge"),
        }
        common["422"] = ref("responses", "KeyReused" if resume else "InvalidInput")
        if mode == "async":
            return {"202": ref("responses", "Accepted"), **common}
        if mode == "stream":
            stream = {
                "description": "Server-sent events, one per state change and task event, each "
                "with `id:` its sequence number in the execution's log (reattach with "
                "`GET .../events/{execution_id}` and `Last-Event-ID`); the last `state` event "
                "carries the final execution details.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
                "headers": REPLAYED,
            }
            return {"200": stream, **common}
        done = json_body(
            {}, "Completed: the raw output, or the execution details with ?detailed=true."
        )
        done["headers"] = REPLAYED
        return {
            "200": done,
            "202": ref("responses", "Paused"),
            **common,
            "500": ref("responses", "Failed"),
        }

    key = ref("parameters", "idempotency_key")
    callback = ref("parameters", "callback_url")
    query = [ref("parameters", "version"), ref("parameters", "detailed"), key, callback]
    with_id = [ref("parameters", "execution_id"), ref("parameters", "detailed"), key]
    paths: dict[str, Any] = {
        f"/{name}": {
            "post": operation(
                f"run_{name}",
                f"Run {name} and wait",
                input_body,
                run_responses("sync", False),
                query,
            )
        },
        f"/{name}/resume/{{execution_id}}": {
            "post": operation(
                f"resume_{name}",
                f"Resume a paused {name} run and wait",
                resume_body,
                run_responses("sync", True),
                with_id,
            )
        },
        f"/{name}/cancel/{{execution_id}}": {
            "post": operation(
                f"cancel_{name}",
                f"Cancel a {name} run",
                None,
                {
                    "200": json_body(DETAILS, "Cancelled (again): the details, state CANCELLED."),
                    "404": ref("responses", "NotFound"),
                    "409": json_body(ref("schemas", "Error"), "Completed or failed: `state`."),
                },
                [ref("parameters", "execution_id")],
            )
        },
        f"/{name}/events/{{execution_id}}": {
            "get": operation(
                f"events_{name}",
                f"Stream the events of a {name} run, from its log then live",
                None,
                {
                    "200": {
                        "description": "Server-sent events of the execution's log with an `id` "
                        "above `Last-Event-ID`, then live ones until a final state or a pause; "
                        "starts nothing. An execution already settled ends at once.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "400": ref("responses", "BadRequest"),
                    "404": ref("responses", "NotFound"),
                },
                [ref("parameters", "execution_id"), ref("parameters", "last_event_id")],
            )
        },
        f"/{name}/status/{{execution_id}}": {
            "get": operation(
                f"status_{name}",
                f"Status of a {name} run",
                None,
                {
                    "200": json_body(DETAILS, "The execution details."),
                    "404": ref("responses", "NotFound"),
                    "409": ref("responses", "Conflict"),
                },
                [ref("parameters", "execution_id")],
            )
        },
    }
    for mode in MODES:
        paths[f"/{name}/{mode}"] = {
            "post": operation(
                f"run_{name}_{mode}",
                f"Run {name} ({mode})",
                input_body,
                run_responses(mode, False),
                query,
            )
        }
        paths[f"/{name}/resume/{{execution_id}}/{mode}"] = {
            "post": operation(
                f"resume_{name}_{mode}",
                f"Resume a paused {name} run ({mode})",
                resume_body,
                run_responses(mode, True),
                with_id,
            )
        }
    return dict(sorted(paths.items()))


# -- input schemas ------------------------------------------------------------------------------


def _add_input_schema(endpoint: Endpoint, schemas: dict[str, Any]) -> Any:
    """Put the endpoint's input schema (and its definitions) into `schemas`; returns the
    request body schema: a ref to it, or `{}` (any JSON) for an untyped input."""
    raw = endpoint.workflow.input_schema
    if raw is None:
        return {}
    schema = copy.deepcopy(dict(raw))
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        found = schema.pop(key, None)
        if isinstance(found, Mapping):
            defs.update(found)

    renames = _def_names(endpoint.name, defs, schemas)
    own_name = _free_name(f"{endpoint.name}_input", schemas, set(renames.values()))
    for old, new in renames.items():
        schemas[new] = _rewrite(defs[old], renames, own_name)
    schemas[own_name] = _rewrite(schema, renames, own_name)
    return ref("schemas", own_name)


def _def_names(owner: str, defs: Mapping[str, Any], schemas: Mapping[str, Any]) -> dict[str, str]:
    """Keep each definition's own name when that is free or holds the very same schema (models
    shared by several workflows then appear once); otherwise prefix all of them with the
    endpoint's name, so refs between them stay consistent."""
    plain = {old: _COMPONENT_NAME.sub("_", old) for old in sorted(defs)}
    if len(set(plain.values())) == len(plain) and all(
        new not in schemas or schemas[new] == _rewrite(defs[old], plain, None)
        for old, new in plain.items()
    ):
        return plain
    renames: dict[str, str] = {}
    for old, new in plain.items():
        renames[old] = _free_name(f"{owner}.{new}", schemas, set(renames.values()))
    return renames


def _free_name(wanted: str, schemas: Mapping[str, Any], taken: set[str] | None) -> str:
    name = _COMPONENT_NAME.sub("_", wanted)
    candidate, n = name, 1
    while candidate in schemas or (taken and candidate in taken):
        n += 1
        candidate = f"{name}_{n}"
    return candidate


def _rewrite(node: Any, renames: Mapping[str, str], root: str | None) -> Any:
    if isinstance(node, list):
        return [_rewrite(item, renames, root) for item in node]
    if not isinstance(node, Mapping):
        return node
    out = {key: _rewrite(value, renames, root) for key, value in node.items()}
    target = out.get("$ref")
    if isinstance(target, str):
        out["$ref"] = _rewrite_ref(target, renames, root)
    return out


def _rewrite_ref(target: str, renames: Mapping[str, str], root: str | None) -> str:
    for prefix in _DEF_PREFIXES:
        if target.startswith(prefix):
            name, sep, rest = target[len(prefix) :].partition("/")
            if name in renames:
                return f"#/components/schemas/{renames[name]}{sep}{rest}"
    if root is not None and (target == "#" or target.startswith("#/properties")):
        # A ref to the input model itself (a recursive model) follows it into components.
        return f"#/components/schemas/{root}{target[1:]}"
    return target
