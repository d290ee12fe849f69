"""The one place where core values become JSON and back.

A single cattrs converter carries every hook, registered once at import: refs travel as
`"namespace/name"` strings, and the API shapes of docs/http-api.md (WorkflowInfo, endpoint,
collision, service) are spelled out here and nowhere else.
A malformed document raises `InvalidRequest` (or `InvalidName` for a bad ref), never a cattrs
error, so callers handle one family of errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import cattrs
from attrs import evolve

from core.errors import FluxError, InvalidRequest
from core.model import (
    JSON,
    Collision,
    Endpoint,
    Resolution,
    ServiceDefinition,
    WorkflowInfo,
    WorkflowRef,
)
from core.resolve import reserved_names
from core.services import new_service

T = TypeVar("T")

converter = cattrs.Converter()


def _structure_ref(value: Any, _: type) -> WorkflowRef:
    if isinstance(value, WorkflowRef):
        return value
    return WorkflowRef.parse(value)


converter.register_unstructure_hook(WorkflowRef, str)
converter.register_structure_hook(WorkflowRef, _structure_ref)


def _info_json(info: WorkflowInfo) -> dict[str, JSON]:
    return {
        "ref": str(info.ref),
        "namespace": info.ref.namespace,
        "name": info.ref.name,
        "version": info.version,
        "input_schema": None if info.input_schema is None else dict(info.input_schema),
        "description": info.description,
    }


def _info_from_json(data: Mapping[str, Any]) -> WorkflowInfo:
    if "ref" in data:
        ref = converter.structure(data["ref"], WorkflowRef)
    else:
        ref = WorkflowRef.parse(f"{data.get('namespace')}/{data.get('name')}")
    schema = data.get("input_schema")
    if schema is not None and not isinstance(schema, Mapping):
        raise InvalidRequest("input_schema must be an object or null")
    return WorkflowInfo(
        ref=ref,
        version=_int(data.get("version"), "version"),
        input_schema=schema,
        description=str(data.get("description") or ""),
    )


def _endpoint_json(endpoint: Endpoint) -> dict[str, JSON]:
    info = _info_json(endpoint.workflow)
    del info["name"]  # the endpoint's name is the workflow's name; said once, first
    return {"name": endpoint.name, **info}


def _endpoint_from_json(data: Any, _: type) -> Endpoint:
    data = _mapping(data, "endpoint")
    info = _info_from_json(data)
    return Endpoint(name=str(data.get("name", info.ref.name)), workflow=info)


def _collision_json(collision: Collision) -> dict[str, JSON]:
    return {
        "name": collision.name,
        "refs": [str(ref) for ref in collision.refs],
        "namespaces": list(collision.namespaces),
    }


def _collision_from_json(data: Any, _: type) -> Collision:
    data = _mapping(data, "collision")
    refs = converter.structure(data.get("refs", []), tuple[WorkflowRef, ...])
    return Collision(name=str(data.get("name")), refs=refs)


converter.register_unstructure_hook(WorkflowInfo, _info_json)
converter.register_unstructure_hook(Endpoint, _endpoint_json)
converter.register_structure_hook(Endpoint, _endpoint_from_json)
converter.register_unstructure_hook(Collision, _collision_json)
converter.register_structure_hook(Collision, _collision_from_json)


def _mapping(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise InvalidRequest(f"{what} must be a JSON object")
    return data


def _int(value: Any, what: str) -> int:
    # bool is an int subclass, and a version of `true` is a bug, not a 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{what} must be an integer")
    return value


def _structure(data: Any, cls: type[T]) -> T:
    try:
        return converter.structure(data, cls)
    except FluxError:
        raise
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError) as exc:
        what = getattr(cls, "__name__", str(cls))
        raise InvalidRequest(f"malformed {what}: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        causes = [_reason(inner) for inner in exc.exceptions]
        return "; ".join(causes) or str(exc)
    if isinstance(exc, FluxError):
        return exc.message
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    return str(exc) or type(exc).__name__


def _service_from_json(mapping: Mapping[str, Any]) -> ServiceDefinition:
    """The definition part of a Service body; resolution fields, if present, are ignored."""
    # cattrs alone would take a lone string letter by letter and any truthy value as true.
    for key in ("namespaces", "workflows", "exclusions"):
        if not isinstance(mapping.get(key, ()), list | tuple):
            raise InvalidRequest(f"{key} must be a list", field=key)
    fields = ("name", "namespaces", "workflows", "exclusions", "mcp_enabled", "revision")
    raw = _structure({k: mapping[k] for k in fields if k in mapping}, ServiceDefinition)
    # Structuring checks types only; names are checked (and selectors sorted) by new_service.
    checked = new_service(
        raw.name,
        raw.namespaces,
        raw.workflows,
        raw.exclusions,
        mapping.get("mcp_enabled", False),
    )
    return evolve(checked, revision=_int(mapping.get("revision", 1), "revision"))


# -- public functions ----------------------------------------------------------------------------


def workflow_info_json(info: WorkflowInfo) -> dict[str, JSON]:
    return converter.unstructure(info)


def service_json(
    service: ServiceDefinition, resolution: Resolution | None = None
) -> dict[str, JSON]:
    """The Service shape of docs/http-api.md; with a resolution, also what it exposes."""
    body: dict[str, JSON] = converter.unstructure(service)
    if resolution is not None:
        body["catalog_revision"] = resolution.catalog_revision
        body["endpoints"] = converter.unstructure(resolution.endpoints, list[Endpoint])
        body["collisions"] = converter.unstructure(resolution.collisions, list[Collision])
        body["unresolved"] = [str(ref) for ref in resolution.unresolved]
        body["reserved"] = list(reserved_names(resolution))
    return body


def resolution_from_json(data: JSON) -> Resolution:
    """A Service body with its resolution (as `GET /services/{name}` answers) back into a
    `Resolution`, e.g. for a standalone process that caches what the main server resolved."""
    mapping = _mapping(data, "service")
    return Resolution(
        service=_service_from_json(mapping),
        catalog_revision=_int(mapping.get("catalog_revision", 0), "catalog_revision"),
        endpoints=_structure(mapping.get("endpoints", []), tuple[Endpoint, ...]),
        collisions=_structure(mapping.get("collisions", []), tuple[Collision, ...]),
        unresolved=_structure(mapping.get("unresolved", []), tuple[WorkflowRef, ...]),
    )
