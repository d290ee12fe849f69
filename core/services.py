"""Service definitions: creation and the PUT update (every edit), all pure and validated.

Selectors are stored sorted and unique, so two services built from the same selectors in any
order, with any repeats, compare equal. Revisions are the store's business, never bumped here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from attrs import evolve, field, frozen

from core.errors import InvalidRequest
from core.model import ServiceDefinition, WorkflowRef
from core.names import validate_namespace, validate_service_name

RefLike = str | WorkflowRef


def _as_ref(value: RefLike) -> WorkflowRef:
    if isinstance(value, WorkflowRef):
        return value
    return WorkflowRef.parse(value)


def _namespace_set(values: Iterable[str], what: str) -> set[str]:
    return {validate_namespace(value) for value in _items(values, what)}


def _ref_set(values: Iterable[RefLike], what: str) -> set[WorkflowRef]:
    return {_as_ref(value) for value in _items(values, what)}


def _items(values: Any, what: str) -> tuple[Any, ...]:
    # A lone string is iterable too; taking it letter by letter would make nonsense selectors.
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise InvalidRequest(f"{what} must be a list", field=what)
    return tuple(values)


def _check_bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest(f"{what} must be true or false", field=what)
    return value


def new_service(
    name: str,
    namespaces: Iterable[str] = (),
    workflows: Iterable[RefLike] = (),
    exclusions: Iterable[RefLike] = (),
    mcp_enabled: bool = False,
) -> ServiceDefinition:
    """A validated service; raises `InvalidName` with the reason for a bad name or ref."""
    return ServiceDefinition(
        name=validate_service_name(name),
        namespaces=tuple(sorted(_namespace_set(namespaces, "namespaces"))),
        workflows=tuple(sorted(_ref_set(workflows, "workflows"))),
        exclusions=tuple(sorted(_ref_set(exclusions, "exclusions"))),
        mcp_enabled=_check_bool(mcp_enabled, "mcp_enabled"),
    )


_CREATE_FIELDS = ("name", "namespaces", "workflows", "exclusions", "mcp_enabled")


def parse_new_service(body: Any) -> ServiceDefinition:
    """The body of `POST /services` as a service. Unknown fields or wrong types raise
    `InvalidRequest`; bad names or refs raise `InvalidName`."""
    mapping = _object(body)
    _reject_unknown(mapping, _CREATE_FIELDS)
    if "name" not in mapping:
        raise InvalidRequest("missing field 'name'", field="name")
    return new_service(
        mapping["name"],
        namespaces=_strings(mapping, "namespaces"),
        workflows=_strings(mapping, "workflows"),
        exclusions=_strings(mapping, "exclusions"),
        mcp_enabled=_check_bool(mapping.get("mcp_enabled", False), "mcp_enabled"),
    )


# -- the PUT update ------------------------------------------------------------------------------


def _str_tuple(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


@frozen
class ServiceUpdate:
    """The body of `PUT /services/{name}`. Removals apply before additions."""

    add_namespaces: tuple[str, ...] = field(default=(), converter=_str_tuple)
    add_workflows: tuple[str, ...] = field(default=(), converter=_str_tuple)
    add_exclusions: tuple[str, ...] = field(default=(), converter=_str_tuple)
    remove_namespaces: tuple[str, ...] = field(default=(), converter=_str_tuple)
    remove_workflows: tuple[str, ...] = field(default=(), converter=_str_tuple)
    remove_exclusions: tuple[str, ...] = field(default=(), converter=_str_tuple)
    mcp_enabled: bool | None = None


_UPDATE_LISTS = (
    "add_namespaces",
    "add_workflows",
    "add_exclusions",
    "remove_namespaces",
    "remove_workflows",
    "remove_exclusions",
)


def parse_service_update(body: Any) -> ServiceUpdate:
    """Validate a PUT body. Unknown fields, wrong types and a selector both added and removed
    raise `InvalidRequest`; bad names or refs raise `InvalidName`. Refs come out canonical
    (`ns/name`), every list sorted and unique."""
    mapping = _object(body)
    _reject_unknown(mapping, (*_UPDATE_LISTS, "mcp_enabled"))

    lists: dict[str, tuple[str, ...]] = {}
    for key in _UPDATE_LISTS:
        values = _strings(mapping, key)
        if key.endswith("_namespaces"):
            lists[key] = tuple(sorted(_namespace_set(values, key)))
        else:
            lists[key] = tuple(str(ref) for ref in sorted(_ref_set(values, key)))

    for kind in ("namespaces", "workflows", "exclusions"):
        both = sorted(set(lists[f"add_{kind}"]) & set(lists[f"remove_{kind}"]))
        if both:
            raise InvalidRequest(
                f"{', '.join(both)} both added to and removed from {kind}",
                field=f"remove_{kind}",
            )

    mcp_enabled = mapping.get("mcp_enabled")
    if mcp_enabled is not None:
        _check_bool(mcp_enabled, "mcp_enabled")
    return ServiceUpdate(**lists, mcp_enabled=mcp_enabled)


def _with(service: ServiceDefinition, **changes: Any) -> ServiceDefinition:
    # Nothing changed: hand back the very same value, not an equal copy.
    if all(getattr(service, key) == value for key, value in changes.items()):
        return service
    return evolve(service, **changes)


def apply_update(service: ServiceDefinition, update: ServiceUpdate) -> ServiceDefinition:
    """The service with `update` applied (removals first, then additions)."""
    namespaces = (
        set(service.namespaces) - _namespace_set(update.remove_namespaces, "remove_namespaces")
    ) | _namespace_set(update.add_namespaces, "add_namespaces")
    mcp = service.mcp_enabled if update.mcp_enabled is None else update.mcp_enabled
    return _with(
        service,
        namespaces=tuple(sorted(namespaces)),
        workflows=_edit_refs(service.workflows, update.remove_workflows, update.add_workflows),
        exclusions=_edit_refs(service.exclusions, update.remove_exclusions, update.add_exclusions),
        mcp_enabled=_check_bool(mcp, "mcp_enabled"),
    )


def _edit_refs(
    current: Iterable[WorkflowRef], remove: Iterable[str], add: Iterable[str]
) -> tuple[WorkflowRef, ...]:
    kept = set(current) - _ref_set(remove, "remove")
    return tuple(sorted(kept | _ref_set(add, "add")))


# -- request body helpers -------------------------------------------------------------------------


def _object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise InvalidRequest("the request body must be a JSON object")
    return body


def _reject_unknown(mapping: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(str(key) for key in mapping if key not in allowed)
    if unknown:
        raise InvalidRequest(
            f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(allowed)}",
            fields=unknown,
        )


def _strings(mapping: Mapping[str, Any], key: str) -> tuple[str, ...]:
    values = mapping.get(key)
    if values is None:
        return ()
    if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
        raise InvalidRequest(f"{key} must be a list of strings", field=key)
    return tuple(values)
