"""Properties of `core.listing`: the opaque cursor, the query parameters of `GET /executions`,
the newest-first order, and the namespaces a principal's permissions may run."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from core.errors import InvalidRequest
from core.listing import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    PARAMETERS,
    Cursor,
    ExecutionFilter,
    newest_first,
    parse_limit,
    parse_listing,
    rfc3339,
    runnable_namespaces,
)
from core.model import Execution, ExecutionState, WorkflowRef
from core.permissions import Principal, grants, run_permission

times = st.floats(min_value=0, max_value=4e9, allow_nan=False)
ids = st.text(min_size=1, max_size=40)
cursors = st.builds(Cursor, times, ids)
namespaces = st.sampled_from(["default", "billing", "ops"])
names = st.sampled_from(["invoice", "refund", "hello"])
refs = st.builds(WorkflowRef, namespaces, names)
executions = st.builds(
    Execution,
    execution_id=st.text(alphabet="abcdef0123", min_size=1, max_size=4),
    ref=refs,
    version=st.just(1),
    state=st.sampled_from(list(ExecutionState)),
    created_at=st.sampled_from([1.0, 2.0, 2.5, 3.0]),
)


@given(cursors)
def test_a_cursor_decodes_to_itself(cursor):
    text = cursor.encode()
    assert text.isascii() and "=" not in text and "/" not in text and "+" not in text
    assert Cursor.decode(text) == cursor


@given(st.text(max_size=80))
@example("")
@example("W1.0sImEiXQ")
def test_any_text_decodes_to_a_cursor_or_is_a_400(text):
    try:
        assert isinstance(Cursor.decode(text), Cursor)
    except InvalidRequest as exc:
        assert exc.details == {"parameter": "cursor"}


@given(cursors, st.data())
def test_an_edited_cursor_is_refused_or_unchanged(cursor, data):
    text = cursor.encode()
    at = data.draw(st.integers(0, len(text) - 1))
    char = data.draw(st.sampled_from("ABCabc019-_"))
    edited = text[:at] + char + text[at + 1 :]
    try:
        decoded = Cursor.decode(edited)
    except InvalidRequest:
        return
    # Only a change within the last character's unused bits decodes at all.
    assert decoded == cursor


@given(st.lists(executions, max_size=30, unique_by=lambda e: e.execution_id), cursors)
def test_a_cursor_splits_the_order_in_two(items, cursor):
    ordered = newest_first(items)
    later = [e for e in ordered if cursor.precedes(e)]
    assert later == ordered[len(ordered) - len(later) :]
    for item in ordered:
        assert not Cursor.after(item).precedes(item)


@given(st.text(max_size=6))
@example("0")
@example("501")
@example("500")
@example(" 7")
@example("٣")
def test_a_limit_is_1_to_500_or_a_400(text):
    try:
        limit = parse_limit(text)
    except InvalidRequest as exc:
        assert exc.details == {"parameter": "limit"}
        return
    assert 1 <= limit <= MAX_LIMIT and str(limit) == text.strip().lstrip("0")


def test_no_limit_is_the_default():
    assert parse_limit(None) == DEFAULT_LIMIT


query_names = st.sampled_from([*PARAMETERS, "page", "State"])
query_values = st.one_of(
    st.sampled_from(["billing", "billing/invoice", "invoice", "FAILED", "10", "", "a/b/c"]),
    st.text(max_size=10),
)


@given(st.dictionaries(query_names, st.lists(query_values, min_size=1, max_size=3)))
def test_any_query_is_a_listing_or_a_400_naming_the_parameter(query):
    try:
        listing = parse_listing(query)
    except InvalidRequest as exc:
        assert exc.details["parameter"] in query
        return
    assert set(query) <= set(PARAMETERS)
    if "workflow" in query:
        assert listing.filter.workflow == WorkflowRef.parse(query["workflow"][0])
    assert {str(s) for s in listing.filter.states} == set(query.get("state", ()))


def test_a_query_filters_as_it_says():
    listing = parse_listing(
        {"workflow": ["invoice"], "state": ["FAILED", "PAUSED"], "service": ["shop"]}
    )
    assert listing.filter == ExecutionFilter(
        workflow=WorkflowRef("default", "invoice"),
        service="shop",
        states=frozenset({ExecutionState.FAILED, ExecutionState.PAUSED}),
    )
    assert listing.limit == DEFAULT_LIMIT and listing.cursor is None


@pytest.mark.parametrize(
    "query",
    [
        {"state": ["DONE"]},
        {"workflow": ["a/b/c"]},
        {"namespace": ["Bad NS"]},
        {"service": [""]},
        {"limit": ["0"]},
        {"cursor": ["nope"]},
        {"sort": ["asc"]},
        {"namespace": ["a", "b"]},
    ],
)
def test_bad_parameters_are_400(query):
    with pytest.raises(InvalidRequest) as caught:
        parse_listing(query)
    assert caught.value.details["parameter"] in query


segment = st.sampled_from(["workflow", "billing", "ops", "invoice", "run", "read", "*", "admin"])
patterns = st.lists(segment, min_size=1, max_size=5).map(":".join)


@given(st.lists(patterns, max_size=4), refs)
@example(["workflow:*:invoice:run"], WorkflowRef("ops", "invoice"))
@example(["*:billing:*"], WorkflowRef("billing", "refund"))
def test_every_runnable_workflow_lies_in_the_namespaces_found(granted, ref):
    found = runnable_namespaces(granted)
    if grants(Principal("p", frozenset(granted)), run_permission(ref)):
        assert found is None or ref.namespace in found


def test_namespaces_of_plain_permissions():
    assert runnable_namespaces(["workflow:billing:*", "admin", "metrics"]) == {"billing"}
    assert runnable_namespaces(["workflow:billing:invoice:read"]) == frozenset()
    assert runnable_namespaces(["workflow:*"]) is None


@given(st.floats(min_value=0, max_value=2.5e11, allow_nan=False))
@example(0.0)
@example(951782400.0)  # 2000-02-29, a leap day of a year divisible by 400
@example(4107542399.9999995)  # rounds up into the next day
def test_times_are_rfc3339_utc_as_datetime_writes_them(epoch):
    expected = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds")
    assert rfc3339(epoch) == expected.replace("+00:00", "Z")
