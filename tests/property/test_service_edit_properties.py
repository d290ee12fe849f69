"""Properties of core.services: the PUT update, one selector at a time (as the CLI's
add/remove/exclude/include send it) and whole bodies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import InvalidName, InvalidRequest
from core.model import ServiceDefinition
from core.resolve import resolve
from core.services import ServiceUpdate, apply_update, new_service, parse_service_update

from .catalogs import CORE, catalogs, namespaces, refs, selectors

services = st.builds(
    lambda raw, mcp: new_service("svc", **raw, mcp_enabled=mcp), selectors(), st.booleans()
)

SELECTOR_FIELDS = {
    "add_namespaces": namespaces,
    "remove_namespaces": namespaces,
    "add_workflows": refs.map(str),
    "remove_workflows": refs.map(str),
    "add_exclusions": refs.map(str),
    "remove_exclusions": refs.map(str),
}


def one(key: str, value: str) -> ServiceUpdate:
    """The update of a single selector, as `flux service add/remove/exclude/include` sends."""
    return ServiceUpdate(**{key: (value,)})


@st.composite
def single_updates(draw) -> ServiceUpdate:
    key = draw(st.sampled_from((*SELECTOR_FIELDS, "mcp_enabled")))
    if key == "mcp_enabled":
        return ServiceUpdate(mcp_enabled=draw(st.booleans()))
    return one(key, draw(SELECTOR_FIELDS[key]))


@CORE
@given(services, single_updates())
def test_adding_twice_is_adding_once(service, update) -> None:
    once = apply_update(service, update)
    assert apply_update(once, update) == once


@CORE
@given(services, namespaces, refs)
def test_removing_undoes_adding_a_new_selector(service, namespace, ref) -> None:
    if namespace not in service.namespaces:
        added = apply_update(service, one("add_namespaces", namespace))
        assert apply_update(added, one("remove_namespaces", namespace)) == service
    if ref not in service.workflows:
        added = apply_update(service, one("add_workflows", str(ref)))
        assert apply_update(added, one("remove_workflows", str(ref))) == service
    if ref not in service.exclusions:
        excluded = apply_update(service, parse_service_update({"add_exclusions": [str(ref)]}))
        included = apply_update(excluded, parse_service_update({"remove_exclusions": [str(ref)]}))
        assert included == service


@CORE
@given(services, refs, catalogs())
def test_include_undoes_exclude_in_the_resolution(service, ref, snapshot) -> None:
    if ref not in service.exclusions:
        excluded = apply_update(service, one("add_exclusions", str(ref)))
        included = apply_update(excluded, one("remove_exclusions", str(ref)))
        assert resolve(included, snapshot) == resolve(service, snapshot)


BAD_NAMESPACES = st.sampled_from(("Bad NS", "", "-x", "UPPER", "a" * 65))
BAD_REFS = st.sampled_from(("a/b/c", "a/1x", "UPPER/x", "ns/class", "ns/" + "x" * 65))


@CORE
@given(services, st.data())
def test_updates_validate_their_argument(service, data) -> None:
    key = data.draw(st.sampled_from(tuple(SELECTOR_FIELDS)))
    bad = data.draw(BAD_NAMESPACES if key.endswith("_namespaces") else BAD_REFS)
    with pytest.raises(InvalidName):
        apply_update(service, one(key, bad))
    with pytest.raises(InvalidName):
        parse_service_update({key: [bad]})
    not_a_bool = data.draw(st.sampled_from((1, 0, "true", "no", [])))
    with pytest.raises(InvalidRequest, match="mcp_enabled"):
        apply_update(service, ServiceUpdate(mcp_enabled=not_a_bool))
    with pytest.raises(InvalidRequest, match="mcp_enabled"):
        parse_service_update({"mcp_enabled": not_a_bool})


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
        "remove_namespaces",
        "remove_workflows",
        "remove_exclusions",
        "add_namespaces",
        "add_workflows",
        "add_exclusions",
    )
    for key in steps:
        for value in body.get(key, []):
            service = apply_update(service, one(key, value))
    if body.get("mcp_enabled") is not None:
        service = apply_update(service, ServiceUpdate(mcp_enabled=body["mcp_enabled"]))
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


@CORE
@given(services, update_bodies())
def test_updates_keep_selectors_sorted_and_unique(service, body) -> None:
    for edited in (service, apply_update(service, parse_service_update(body))):
        for values in (edited.namespaces, edited.workflows, edited.exclusions):
            assert list(values) == sorted(set(values))
