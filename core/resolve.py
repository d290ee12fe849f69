"""Service resolution: (service definition, catalog snapshot) -> what the service exposes."""

from __future__ import annotations

from collections.abc import Iterable

from core.collisions import collision_error, split_by_name
from core.errors import EndpointNotFound, ServiceNotFound
from core.model import (
    CatalogSnapshot,
    Collision,
    Endpoint,
    Resolution,
    ServiceDefinition,
    WorkflowInfo,
    WorkflowRef,
)

# Route names of the standalone service process that a workflow endpoint cannot take over.
STANDALONE_ROUTES = ("health", "mcp")


def resolve(service: ServiceDefinition, snapshot: CatalogSnapshot) -> Resolution:
    """Collect the selected namespaces, add the named workflows, remove the exclusions, then
    split the result into endpoints and collisions.

    Only the snapshot's indexes are read, so the cost follows the service's selectors and never
    the size of the rest of the catalog.
    """
    chosen: dict[WorkflowRef, WorkflowInfo] = {}
    for namespace in service.namespaces:
        for info in snapshot.in_namespace(namespace):
            chosen[info.ref] = info

    unresolved: set[WorkflowRef] = set()
    for ref in service.workflows:
        named = snapshot.get(ref)
        if named is None:
            unresolved.add(ref)
        else:
            chosen[ref] = named

    # Exclusions are applied last so that they win over both kinds of selector.
    for ref in service.exclusions:
        chosen.pop(ref, None)

    endpoints, collisions = split_by_name(chosen.values())
    return Resolution(
        service=service,
        catalog_revision=snapshot.revision,
        endpoints=endpoints,
        collisions=collisions,
        unresolved=tuple(sorted(unresolved)),
    )


def reserved_names(
    resolution: Resolution, reserved: Iterable[str] = STANDALONE_ROUTES
) -> tuple[str, ...]:
    """Endpoint (or colliding) names that the standalone process's own routes shadow, sorted."""
    taken = frozenset(reserved)
    names = {e.name for e in resolution.endpoints} | {c.name for c in resolution.collisions}
    return tuple(sorted(taken.intersection(names)))


def standalone_endpoints(resolution: Resolution) -> tuple[Endpoint, ...]:
    """The endpoints a standalone process serves: those its own routes do not shadow."""
    taken = frozenset(STANDALONE_ROUTES)
    return tuple(endpoint for endpoint in resolution.endpoints if endpoint.name not in taken)


def missing_service(name: str) -> ServiceNotFound:
    return ServiceNotFound(f"service {name!r} not found", service=name)


def find_endpoint(resolution: Resolution, name: str) -> Endpoint:
    """The endpoint called `name`; raises `NameCollision` (409) or `EndpointNotFound` (404)."""
    found: Endpoint | Collision | None = resolution.lookup(name)
    if isinstance(found, Endpoint):
        return found
    if isinstance(found, Collision):
        raise collision_error(found)
    raise EndpointNotFound(
        f"service {resolution.service.name!r} has no endpoint {name!r}",
        service=resolution.service.name,
        endpoint=name,
    )


def find_standalone_endpoint(resolution: Resolution, name: str) -> Endpoint:
    """`find_endpoint` as the standalone process answers it: a name its own routes shadow is
    not found there (it stays reachable on the main server)."""
    if name in STANDALONE_ROUTES and resolution.lookup(name) is not None:
        service = resolution.service.name
        raise EndpointNotFound(
            f"endpoint {name!r} clashes with a route of the standalone process; "
            f"call it on the main server at /services/{service}/{name}",
            service=service,
            endpoint=name,
            reserved=True,
        )
    return find_endpoint(resolution, name)
