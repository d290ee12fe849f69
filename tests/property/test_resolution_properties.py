"""Properties of core.resolve over generated catalogs and selectors (resolution order first)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from core.model import CatalogSnapshot, Resolution, ServiceDefinition, WorkflowInfo, WorkflowRef
from core.resolve import resolve
from core.services import ServiceUpdate, apply_update, new_service

from .catalogs import CORE, UNKNOWN_NAMESPACE, catalog_refs, catalogs, selectors


def service_of(raw: dict[str, list]) -> ServiceDefinition:
    return new_service("svc", **raw)


def resolved_refs(resolution: Resolution) -> set[WorkflowRef]:
    refs = {endpoint.workflow.ref for endpoint in resolution.endpoints}
    for collision in resolution.collisions:
        refs.update(collision.refs)
    return refs


def expected_refs(service: ServiceDefinition, snapshot: CatalogSnapshot) -> set[WorkflowRef]:
    """The seed's rule, spelled out naively over the whole catalog."""
    known = {info.ref for info in snapshot.workflows}
    from_namespaces = {ref for ref in known if ref.namespace in service.namespaces}
    named = {ref for ref in service.workflows if ref in known}
    return (from_namespaces | named) - set(service.exclusions)


def outcome(resolution: Resolution):
    """What a caller sees, without the revision that labels it."""
    return resolution.endpoints, resolution.collisions, resolution.unresolved


@CORE
@given(catalogs(), selectors())
def test_resolved_set_is_namespaces_plus_named_minus_exclusions(snapshot, raw) -> None:
    service = service_of(raw)
    resolution = resolve(service, snapshot)
    assert resolved_refs(resolution) == expected_refs(service, snapshot)
    known = {info.ref for info in snapshot.workflows}
    assert set(resolution.unresolved) == {ref for ref in service.workflows if ref not in known}
    assert resolution.catalog_revision == snapshot.revision


@CORE
@given(catalogs(), selectors(), st.data())
def test_selector_order_and_repeats_do_not_matter(snapshot, raw, data) -> None:
    shuffled = {
        key: data.draw(st.permutations(values + values[: data.draw(st.integers(0, len(values)))]))
        for key, values in raw.items()
    }
    assert service_of(shuffled) == service_of(raw)
    assert resolve(service_of(shuffled), snapshot) == resolve(service_of(raw), snapshot)


@CORE
@given(catalogs(), selectors(), catalog_refs)
def test_an_exclusion_always_wins(snapshot, raw, ref) -> None:
    service = service_of(raw)
    before = resolved_refs(resolve(service, snapshot))
    excluded = apply_update(service, ServiceUpdate(add_exclusions=(str(ref),)))
    after = resolved_refs(resolve(excluded, snapshot))
    assert ref not in after
    assert after == before - {ref}
    # even when the excluded ref is also named and its namespace selected
    loud = new_service(
        "svc",
        [ref.namespace, *raw["namespaces"]],
        [ref, *raw["workflows"]],
        exclusions=[ref],
    )
    assert ref not in resolved_refs(resolve(loud, snapshot))


@CORE
@given(catalogs(), selectors())
def test_names_collide_exactly_when_two_namespaces_contribute(snapshot, raw) -> None:
    service = service_of(raw)
    resolution = resolve(service, snapshot)
    contributors = Counter(ref.name for ref in expected_refs(service, snapshot))

    assert {c.name for c in resolution.collisions} == {n for n, k in contributors.items() if k >= 2}
    for collision in resolution.collisions:
        assert len(set(collision.namespaces)) == len(collision.refs) >= 2
        assert {ref.name for ref in collision.refs} == {collision.name}
    # a collision never removes another endpoint: every single-contributor name is served
    assert {e.name for e in resolution.endpoints} == {n for n, k in contributors.items() if k == 1}
    for endpoint in resolution.endpoints:
        assert endpoint.name == endpoint.workflow.ref.name
        assert snapshot.get(endpoint.workflow.ref) == endpoint.workflow


@CORE
@given(catalogs(), selectors(), st.data())
def test_registering_in_an_unselected_namespace_changes_nothing(snapshot, raw, data) -> None:
    service = service_of(raw)
    unselected = [
        ns for ns in ("a", "b", "c", "d", UNKNOWN_NAMESPACE) if ns not in service.namespaces
    ]
    if not unselected:
        service = new_service("svc", [], raw["workflows"], raw["exclusions"])
        unselected = ["a"]
    namespace = data.draw(st.sampled_from(unselected))
    name = data.draw(st.sampled_from(("x", "y", "z", "w", "v", "fresh")))
    ref = WorkflowRef(namespace, name)
    if ref in service.workflows:
        service = new_service(
            "svc", service.namespaces, set(service.workflows) - {ref}, service.exclusions
        )
    new_info = WorkflowInfo(ref, data.draw(st.integers(1, 9)), {"type": "object"})
    grown = CatalogSnapshot(
        snapshot.revision + 1,
        tuple(info for info in snapshot.workflows if info.ref != ref) + (new_info,),
    )
    assert outcome(resolve(service, grown)) == outcome(resolve(service, snapshot))


@CORE
@given(catalogs(), selectors(), st.data())
def test_resolution_is_deterministic_and_sorted(snapshot, raw, data) -> None:
    service = service_of(raw)
    resolution = resolve(service, snapshot)
    reordered = CatalogSnapshot(
        snapshot.revision, tuple(data.draw(st.permutations(snapshot.workflows)))
    )
    assert resolve(service, reordered) == resolution == resolve(service, snapshot)

    names = [e.name for e in resolution.endpoints]
    assert names == sorted(names)
    collided = [c.name for c in resolution.collisions]
    assert collided == sorted(collided)
    assert all(list(c.refs) == sorted(c.refs) for c in resolution.collisions)
    assert list(resolution.unresolved) == sorted(set(resolution.unresolved))


@CORE
@given(catalogs(), selectors())
def test_endpoints_carry_the_snapshot_entry(snapshot, raw) -> None:
    resolution = resolve(service_of(raw), snapshot)
    for endpoint in resolution.endpoints:
        assert endpoint.workflow is snapshot.get(endpoint.workflow.ref)
