"""Collision detection: which endpoint names are ambiguous across namespaces."""

from __future__ import annotations

from collections.abc import Iterable

from core.errors import NameCollision
from core.model import Collision, Endpoint, WorkflowInfo


def split_by_name(
    workflows: Iterable[WorkflowInfo],
) -> tuple[tuple[Endpoint, ...], tuple[Collision, ...]]:
    """Group workflows by their own name: a name with one workflow becomes an endpoint, a name
    with several (necessarily from different namespaces) a collision. Both sorted by name.

    A collision only ever takes its own name out of service, never a neighbour's.
    """
    by_name: dict[str, list[WorkflowInfo]] = {}
    for info in workflows:
        by_name.setdefault(info.ref.name, []).append(info)

    endpoints: list[Endpoint] = []
    collisions: list[Collision] = []
    for name in sorted(by_name):
        infos = by_name[name]
        if len(infos) == 1:
            endpoints.append(Endpoint(name, infos[0]))
        else:
            collisions.append(Collision(name, tuple(sorted(info.ref for info in infos))))
    return tuple(endpoints), tuple(collisions)


def collision_error(collision: Collision) -> NameCollision:
    """The typed error (409) for a request to a colliding name, naming the namespaces involved."""
    namespaces = ", ".join(collision.namespaces)
    return NameCollision(
        f"endpoint {collision.name!r} is ambiguous: namespaces {namespaces} all provide it; "
        "exclude all but one of them",
        endpoint=collision.name,
        namespaces=list(collision.namespaces),
        refs=[str(ref) for ref in collision.refs],
    )
