"""Properties of `core.permissions`: wildcard matching and permissions from token claims."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from core.errors import Forbidden, InvalidRequest
from core.model import WorkflowRef
from core.permissions import (
    ADMIN,
    Principal,
    grants,
    matches,
    permissions_from_claims,
    require,
    run_permission,
    validate_permission,
)

segment = st.from_regex(r"[a-z0-9_]{1,8}", fullmatch=True)
permission = st.lists(segment, min_size=1, max_size=5).map(":".join)
refs = st.builds(
    WorkflowRef,
    st.from_regex(r"[a-z0-9][a-z0-9_-]{0,10}", fullmatch=True),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True),
)


def principal(*granted: str) -> Principal:
    return Principal("tester", frozenset(granted))


@given(permission)
def test_a_permission_grants_itself_and_star_grants_everything(p):
    assert grants(principal(p), p)
    assert grants(principal("*"), p)
    assert not grants(principal(), p)


@given(permission, st.data())
def test_star_in_any_segment_matches_that_segment(p, data):
    parts = p.split(":")
    at = data.draw(st.integers(0, len(parts) - 1))
    pattern = ":".join("*" if i == at else s for i, s in enumerate(parts))
    assert matches(pattern, p)


@given(permission, st.data())
def test_changing_a_fixed_segment_stops_the_match(p, data):
    parts = p.split(":")
    at = data.draw(st.integers(0, len(parts) - 1))
    other = data.draw(segment.filter(lambda s: s != parts[at]))
    changed = ":".join(other if i == at else s for i, s in enumerate(parts))
    assert not matches(changed, p)


@given(permission, st.lists(segment, min_size=1, max_size=3))
def test_trailing_star_covers_the_tail_but_not_the_prefix_alone(prefix, tail):
    assert matches(prefix + ":*", ":".join([prefix, *tail]))
    assert not matches(prefix + ":*", prefix)


@given(permission, permission)
def test_inner_star_matches_exactly_one_segment(p, q):
    # "a:*:c" never matches a permission with a different number of segments.
    pattern = "a:*:c"
    wanted = f"a:{p}:c"
    assert matches(pattern, wanted) == (":" not in p)


@given(refs)
def test_run_permission_shape_and_namespace_wildcard(ref):
    perm = run_permission(ref)
    assert perm == f"workflow:{ref.namespace}:{ref.name}:run"
    assert grants(principal(f"workflow:{ref.namespace}:*"), perm)
    assert grants(principal("workflow:*:*:run"), perm)
    assert not grants(principal(f"workflow:{ref.namespace}:*:resume"), perm)
    assert not grants(principal(ADMIN), perm)


@given(permission)
def test_require_names_the_missing_permission(p):
    with pytest.raises(Forbidden) as caught:
        require(principal("something:else:entirely:x:y:z"), p)
    assert caught.value.details == {"permission": p}
    require(principal(p), p)


@given(st.lists(permission, max_size=5), st.lists(permission, max_size=5))
def test_claims_give_listed_permissions_plus_mapped_roles(direct, role_grants):
    claims = {"permissions": direct, "groups": ["ops", "unknown-role"]}
    found = permissions_from_claims(claims, "permissions", "groups", {"ops": role_grants})
    assert found == frozenset(direct) | frozenset(role_grants)


@given(st.lists(permission, max_size=5))
def test_space_separated_scope_claims_and_dotted_paths(perms):
    assert permissions_from_claims({"scope": " ".join(perms)}, "scope") == frozenset(perms)
    nested = {"realm_access": {"roles": ["admin"]}}
    assert permissions_from_claims(nested, None, "realm_access.roles", {"admin": ["*"]}) == {"*"}


@given(
    st.one_of(
        st.none(),
        st.integers(),
        st.dictionaries(st.text(), st.text()),
        st.lists(st.one_of(st.integers(), st.none(), st.just(""), st.just("a b"))),
    )
)
def test_malformed_claims_grant_nothing(value):
    assert permissions_from_claims({"permissions": value}, "permissions") == frozenset()


@given(st.text())
@example("admin\n")
@example("a::b")
def test_validate_permission_accepts_exactly_well_formed_strings(text):
    well_formed = bool(text) and all(
        s and not any(c.isspace() or c == "," for c in s) for s in text.split(":")
    )
    if well_formed:
        assert validate_permission(text) == text
    else:
        with pytest.raises(InvalidRequest):
            validate_permission(text)


def test_principal_accepts_a_lone_string():
    assert Principal("x", "admin").permissions == frozenset({"admin"})
