"""core.resolve and core.collisions: examples, error cases and the cost rule."""

from __future__ import annotations

import pytest

from core.errors import EndpointNotFound, NameCollision
from core.model import CatalogSnapshot, Collision, Endpoint, WorkflowInfo, WorkflowRef
from core.resolve import find_endpoint, reserved_names, resolve
from core.services import new_service


def info(ref: str, version: int = 1) -> WorkflowInfo:
    return WorkflowInfo(WorkflowRef.parse(ref), version)


CATALOG = CatalogSnapshot(
    17,
    (
        info("billing/invoice", 3),
        info("billing/refund"),
        info("billing/internal"),
        info("billing/process"),
        info("analytics/process"),
        info("analytics/report", 2),
        info("analytics/dash"),
        info("default/health"),
    ),
)


def names(resolution) -> list[str]:
    return [endpoint.name for endpoint in resolution.endpoints]


def test_namespaces_then_workflows_then_exclusions() -> None:
    service = new_service(
        "billing",
        namespaces=["billing"],
        workflows=["analytics/report", "billing/gone"],
        exclusions=["billing/internal"],
    )
    resolution = resolve(service, CATALOG)
    assert names(resolution) == ["invoice", "process", "refund", "report"]
    assert resolution.endpoints[0] == Endpoint("invoice", info("billing/invoice", 3))
    assert resolution.unresolved == (WorkflowRef("billing", "gone"),)
    assert resolution.collisions == ()
    assert resolution.catalog_revision == 17
    assert resolution.service == service


def test_a_collision_takes_out_only_its_own_name() -> None:
    service = new_service("combined", namespaces=["analytics", "billing"])
    resolution = resolve(service, CATALOG)
    assert resolution.collisions == (
        Collision(
            "process", (WorkflowRef("analytics", "process"), WorkflowRef("billing", "process"))
        ),
    )
    assert names(resolution) == ["dash", "internal", "invoice", "refund", "report"]


def test_excluding_one_side_settles_a_collision() -> None:
    service = new_service(
        "combined", namespaces=["analytics", "billing"], exclusions=["analytics/process"]
    )
    resolution = resolve(service, CATALOG)
    assert resolution.collisions == ()
    assert resolution.lookup("process") == Endpoint("process", info("billing/process"))


def test_a_named_workflow_can_collide_with_a_namespace() -> None:
    service = new_service("mixed", namespaces=["billing"], workflows=["analytics/process"])
    resolution = resolve(service, CATALOG)
    assert [c.name for c in resolution.collisions] == ["process"]
    assert resolution.collisions[0].namespaces == ("analytics", "billing")


def test_an_exclusion_beats_a_named_workflow() -> None:
    service = new_service("x", workflows=["analytics/report"], exclusions=["analytics/report"])
    resolution = resolve(service, CATALOG)
    assert resolution.endpoints == () and resolution.unresolved == ()


def test_unknown_namespaces_and_refs_resolve_to_nothing() -> None:
    service = new_service("x", namespaces=["nowhere"], workflows=["b", "a/z", "a/y"])
    resolution = resolve(service, CATALOG)
    assert resolution.endpoints == ()
    assert [str(ref) for ref in resolution.unresolved] == ["a/y", "a/z", "default/b"]


def test_find_endpoint() -> None:
    resolution = resolve(new_service("c", namespaces=["analytics", "billing"]), CATALOG)
    assert find_endpoint(resolution, "dash").workflow.ref == WorkflowRef("analytics", "dash")
    with pytest.raises(NameCollision) as collided:
        find_endpoint(resolution, "process")
    assert collided.value.details["namespaces"] == ["analytics", "billing"]
    with pytest.raises(EndpointNotFound):
        find_endpoint(resolution, "nope")
    with pytest.raises(EndpointNotFound):
        find_endpoint(resolution, "Dash")  # names match exactly


def test_reserved_names() -> None:
    resolution = resolve(new_service("d", namespaces=["default", "billing"]), CATALOG)
    assert reserved_names(resolution) == ("health",)
    assert reserved_names(resolution, reserved=("invoice", "mcp")) == ("invoice",)
    assert reserved_names(resolve(new_service("e", namespaces=["billing"]), CATALOG)) == ()


class CountingSnapshot:
    """Offers only the indexes; a scan of the whole catalog would hit AttributeError."""

    def __init__(self, snapshot: CatalogSnapshot) -> None:
        self._snapshot = snapshot
        self.revision = snapshot.revision
        self.namespaces_read: list[str] = []
        self.refs_read: list[WorkflowRef] = []

    def in_namespace(self, namespace: str):
        self.namespaces_read.append(namespace)
        return self._snapshot.in_namespace(namespace)

    def get(self, ref: WorkflowRef):
        self.refs_read.append(ref)
        return self._snapshot.get(ref)


def test_resolution_reads_only_what_the_selectors_name() -> None:
    big = CatalogSnapshot(
        1,
        tuple(info(f"ns{n}/wf{i}") for n in range(50) for i in range(20))
        + (info("billing/invoice"), info("analytics/report")),
    )
    spy = CountingSnapshot(big)
    service = new_service("s", namespaces=["billing"], workflows=["analytics/report"])
    resolution = resolve(service, spy)  # type: ignore[arg-type]
    assert names(resolution) == ["invoice", "report"]
    assert spy.namespaces_read == ["billing"]
    assert spy.refs_read == [WorkflowRef("analytics", "report")]
