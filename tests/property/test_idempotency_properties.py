"""Properties of idempotency keys as values (core/idempotency.py): which keys are well formed,
whose keys they are, and when two requests count as the same request."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import InvalidRequest
from core.idempotency import MAX_KEY_LENGTH, fingerprint, principal_identity, validate_key
from core.permissions import Principal

VISIBLE = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
GOOD_KEY = st.text(VISIBLE, min_size=1, max_size=MAX_KEY_LENGTH)
NOT_VISIBLE = st.characters().filter(lambda c: not 0x21 <= ord(c) <= 0x7E)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(GOOD_KEY)
def test_every_key_of_1_to_255_visible_ascii_characters_is_taken_as_it_is(key):
    assert validate_key(key) == key


@given(GOOD_KEY, NOT_VISIBLE, st.integers(0, MAX_KEY_LENGTH))
def test_one_character_outside_visible_ascii_anywhere_is_refused(key, bad, at):
    with pytest.raises(InvalidRequest):
        validate_key(key[:at] + bad + key[at:])


@given(st.text(VISIBLE, min_size=MAX_KEY_LENGTH + 1, max_size=MAX_KEY_LENGTH + 40))
def test_a_key_over_255_characters_is_refused(key):
    with pytest.raises(InvalidRequest):
        validate_key(key)


def test_the_empty_key_is_refused():
    with pytest.raises(InvalidRequest):
        validate_key("")


@given(st.dictionaries(st.text(), JSON, max_size=6))
def test_one_body_in_any_key_order_and_encoding_has_one_fingerprint(body):
    shuffled = dict(reversed(list(body.items())))
    reparsed = json.loads(json.dumps(body, indent=2, ensure_ascii=False))
    assert fingerprint("run", "service:s/w", body) == fingerprint("run", "service:s/w", shuffled)
    assert fingerprint("run", "service:s/w", body) == fingerprint("run", "service:s/w", reparsed)


@given(JSON, JSON)
def test_other_bodies_have_other_fingerprints(one, other):
    if json.dumps(one, sort_keys=True) != json.dumps(other, sort_keys=True):
        assert fingerprint("run", "t", one) != fingerprint("run", "t", other)


@given(JSON)
def test_kind_target_resumed_execution_and_version_each_make_another_request(body):
    base = fingerprint("run", "service:s/w", body)
    others = {
        fingerprint("resume", "service:s/w", body),
        fingerprint("run", "service:s/v", body),
        fingerprint("run", "workflow:s/w", body),
        fingerprint("run", "service:s/w", body, version=1),
        fingerprint("resume", "service:s/w", body, execution_id="e1"),
        fingerprint("resume", "service:s/w", body, execution_id="e2"),
    }
    assert base not in others and len(others) == 6


@given(st.text(), st.text(), st.sampled_from(["api_key", "jwt", "open"]))
def test_principals_differ_by_subject_and_by_how_they_were_authenticated(one, other, via):
    first = principal_identity(Principal(subject=one, via=via))
    assert first == principal_identity(Principal(subject=one, via=via, permissions={"*"}))
    if one != other:
        assert first != principal_identity(Principal(subject=other, via=via))
    assert first != principal_identity(Principal(subject=one, via="anonymous"))
