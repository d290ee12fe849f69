"""Round trips through core.convert: what storage writes as JSON comes back equal."""

from __future__ import annotations

import json

from attrs import evolve
from hypothesis import given
from hypothesis import strategies as st

from core.convert import (
    event_from_json,
    event_json,
    execution_from_json,
    execution_json,
    resolution_from_json,
    service_from_json,
    service_json,
)
from core.model import EventKind, Execution, ExecutionError, ExecutionEvent, ExecutionState
from core.resolve import resolve
from core.services import new_service

from .catalogs import CORE, catalog_refs, catalogs, json_values, selectors

times = st.floats(min_value=0, max_value=4e9, allow_nan=False)

executions = st.builds(
    Execution,
    execution_id=st.text("0123456789abcdef", min_size=1, max_size=32),
    ref=catalog_refs,
    version=st.integers(1, 10_000),
    state=st.sampled_from(ExecutionState),
    input=json_values,
    output=json_values,
    error=st.none() | st.builds(ExecutionError, st.text(max_size=20), st.text(max_size=40)),
    pause_name=st.none() | st.text(max_size=10),
    created_at=times,
    updated_at=times,
)

events = st.builds(
    ExecutionEvent,
    execution_id=st.text("0123456789abcdef", min_size=1, max_size=32),
    seq=st.integers(0, 10**6),
    kind=st.sampled_from(EventKind),
    key=st.text(max_size=20),
    value=json_values,
    at=times,
)


def through_text(value):
    """As a storage adapter would: to JSON text and back."""
    return json.loads(json.dumps(value))


@CORE
@given(executions)
def test_execution_round_trip(execution) -> None:
    assert execution_from_json(through_text(execution_json(execution))) == execution


@CORE
@given(events)
def test_event_round_trip(event) -> None:
    assert event_from_json(through_text(event_json(event))) == event


@CORE
@given(selectors(), st.booleans(), st.integers(1, 10**6))
def test_service_round_trip(raw, mcp, revision) -> None:
    service = new_service("svc", **raw, mcp_enabled=mcp)
    stored = evolve(service, revision=revision)
    assert service_from_json(through_text(service_json(stored))) == stored


@CORE
@given(selectors(), catalogs())
def test_resolution_round_trip(raw, snapshot) -> None:
    resolution = resolve(new_service("svc", **raw), snapshot)
    body = through_text(service_json(resolution.service, resolution))
    assert resolution_from_json(body) == resolution
    assert service_json(resolution.service, resolution_from_json(body)) == body
