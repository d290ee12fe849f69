"""Properties of core.services: idempotent edits, undo, and the PUT update."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core.model import ServiceDefinition
from core.resolve import resolve
from core.services import (
    add_namespace,
    add_workflow,
    apply_update,
    exclude,
    include,
    new_service,
    parse_service_update,
    remove_namespace,
    remove_workflow,
    set_mcp,
)

from .catalogs import CORE, catalogs, namespaces, refs, selectors

services = st.builds(
    lambda raw, mcp: new_service("svc", **raw, mcp_enabled=mcp), selectors(), st.booleans()
)


@CORE
@given(services, namespaces, refs, st.booleans())
def test_adding_twice_is_adding_once(service, namespace, ref, mcp) -> None:
    for edit, arg in (
        (add_namespace, namespace),
        (add_workflow, ref),
        (exclude, ref),
        (remove_namespace, namespace),
        (remove_workflow, ref),
        (include, ref),
        (set_mcp, mcp),
    ):
        once = edit(service, arg)
        assert edit(once, arg) == once


@CORE
@given(services, namespaces, refs)
def test_removing_undoes_adding_a_new_selector(service, namespace, ref) -> None:
    if namespace not in service.namespaces:
        assert remove_namespace(add_namespace(service, namespace), namespace) == service
    if ref not in service.workflows:
        assert remove_workflow(add_workflow(service, str(ref)), ref) == service
    if ref not in service.exclusions:
        assert include(exclude(service, ref), str(ref)) == service


@CORE
@given(services, refs, catalogs())
def test_include_undoes_exclude_in_the_resolution(service, ref, snapshot) -> None:
    if ref not in service.exclusions:
        assert resolve(include(exclude(service, ref), ref), snapshot) == resolve(service, snapshot)


@CORE
@given(services)
def test_edits_keep_selectors_sorted_and_unique(service) -> None:
    for values in (service.namespaces, service.workflows, service.exclusions):
        assert list(values) == sorted(set(values))


@st.composite
def update_bodies(draw) -> dict:
    """A PUT body: any subset of the fields, lists in any order, and no selector both added
    and removed (that one is refused, see the unit tests)."""
    body: dict = {}
    for kind, strategy in (("namespaces", namespaces), ("workflows", refs), ("exclusions", refs)):
        add = draw(st.lists(strategy.map(str), max_size=4))
        remove = [v for v in draw(st.lists(strategy.map(str), max_size=4)) if v not in add]
        if add or draw(st.booleans()):
            body[f"add_{kind}"] = add
        if remove or draw(st.booleans()):
            body[f"remove_{kind}"] = remove
    mcp = draw(st.none() | st.booleans())
    if mcp is not None or draw(st.booleans()):
        body["mcp_enabled"] = mcp
    return body


def by_single_edits(service: ServiceDefinition, body: dict) -> ServiceDefinition:
    """The same update as the CLI would do it: one selector at a time, removals first."""
    steps = (
        ("remove_namespaces", remove_namespace),
        ("remove_workflows", remove_workflow),
        ("remove_exclusions", include),
        ("add_namespaces", add_namespace),
        ("add_workflows", add_workflow),
        ("add_exclusions", exclude),
    )
    for key, edit in steps:
        for value in body.get(key, []):
            service = edit(service, value)
    if body.get("mcp_enabled") is not None:
        service = set_mcp(service, body["mcp_enabled"])
    return service


@CORE
@given(services, update_bodies(), st.integers(1, 50))
def test_apply_update_equals_the_single_edits(service, body, revision) -> None:
    stored = ServiceDefinition(
        service.name,
        service.namespaces,
        service.workflows,
        service.exclusions,
        service.mcp_enabled,
        revision,
    )
    update = parse_service_update(body)
    updated = apply_update(stored, update)
    assert updated == by_single_edits(stored, body)
    assert updated.revision == revision  # the store, not the core, moves the revision
    for kind in ("namespaces", "workflows", "exclusions"):
        before = {str(v) for v in getattr(stored, kind)}
        after = {str(v) for v in getattr(updated, kind)}
        removed, added = getattr(update, f"remove_{kind}"), getattr(update, f"add_{kind}")
        assert after == (before - set(removed)) | set(added)
    if body.get("mcp_enabled") is not None:
        assert updated.mcp_enabled is body["mcp_enabled"]


@CORE
@given(services, update_bodies(), st.data())
def test_update_list_order_and_repeats_do_not_matter(service, body, data) -> None:
    shuffled = {
        key: data.draw(st.permutations(value + value[:1])) if isinstance(value, list) else value
        for key, value in body.items()
    }
    assert parse_service_update(shuffled) == parse_service_update(body)
    assert apply_update(service, parse_service_update(shuffled)) == apply_update(
        service, parse_service_update(body)
    )


@CORE
@given(services, update_bodies())
def test_applying_an_update_twice_is_applying_it_once(service, body) -> None:
    update = parse_service_update(body)
    once = apply_update(service, update)
    assert apply_update(once, update) == once
