"""Properties of reattachable streams: `Last-Event-ID` parsing, the replay of a log into stream
items, and the `id:` line of a server-sent event."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import InvalidRequest
from core.model import EventKind, Execution, ExecutionEvent, ExecutionState, WorkflowRef
from core.responses import sse_message
from core.stream import (
    MAX_EVENT_ID,
    StateChange,
    caught_up,
    ends,
    parse_last_event_id,
    replayed,
)

BLANKS = st.sampled_from(["", " ", "\t", "  "])


@given(st.integers(0, MAX_EVENT_ID), BLANKS, BLANKS)
def test_an_event_id_in_range_parses_to_itself(n, before, after):
    assert parse_last_event_id(f"{before}{n}{after}") == n


@given(BLANKS)
def test_no_header_or_a_blank_one_is_the_start(blank):
    assert parse_last_event_id(None) == 0
    assert parse_last_event_id(blank) == 0


def _is_valid(text: str) -> bool:
    stripped = text.strip()
    return (
        stripped == ""
        or (stripped.isascii() and stripped.isdigit() and len(stripped) <= 19)
        and int(stripped or "0") <= MAX_EVENT_ID
    )


@given(st.text(max_size=30))
def test_anything_else_is_a_400_never_another_error(text):
    if _is_valid(text):
        assert parse_last_event_id(text) == int(text.strip() or "0")
        return
    with pytest.raises(InvalidRequest) as raised:
        parse_last_event_id(text)
    assert "Last-Event-ID" in raised.value.message


@pytest.mark.parametrize("text", ["-1", "+1", "1.0", "1e3", "0x1", "²", "٣", str(MAX_EVENT_ID + 1)])
def test_near_misses_are_refused(text):
    with pytest.raises(InvalidRequest):
        parse_last_event_id(text)


# -- replaying a log -----------------------------------------------------------------------

STEPS = st.sampled_from(
    [EventKind.TASK_COMPLETED, EventKind.TASK_FAILED, EventKind.WORKER_LOST, "pause"]
)


@st.composite
def logs(draw: st.DrawFn) -> tuple[Execution, list[ExecutionEvent]]:
    """A run's log as the engine writes it: RUNNING, task events, pauses each followed by their
    PAUSED state and (but for the last) a resume, then maybe a final state; seqs grow with gaps
    (task starts are not logged)."""
    execution_id = "e1"
    seq = 0
    events: list[ExecutionEvent] = []

    def add(kind: EventKind, key: str = "", value: object = None) -> None:
        nonlocal seq
        seq += draw(st.integers(1, 3))
        events.append(ExecutionEvent(execution_id, seq, kind, key, value, float(seq)))

    add(EventKind.STATE, value="RUNNING")
    steps = draw(st.lists(STEPS, max_size=8))
    for index, step in enumerate(steps):
        if step == "pause":
            add(EventKind.PAUSED, f"p#{index}", {"asked": index})
            add(EventKind.STATE, value="PAUSED")
            if index < len(steps) - 1:
                add(EventKind.RESUMED, f"p#{index}", index)
                add(EventKind.STATE, value="RUNNING")
        else:
            add(EventKind(step), f"t#{index}", index)
    state = ExecutionState(str(events[-1].value)) if events[-1].kind is EventKind.STATE else None
    if state is not ExecutionState.PAUSED:
        state = draw(st.sampled_from([ExecutionState.RUNNING, *FINALS]))
        if state is not ExecutionState.RUNNING:
            add(EventKind.STATE, value=str(state))
    pause_output = events[-2].value if state is ExecutionState.PAUSED else None
    output = {"final": True} if state is ExecutionState.COMPLETED else pause_output
    execution = Execution(
        execution_id, WorkflowRef("ns", "wf"), 1, state, output=output, updated_at=float(seq)
    )
    return execution, events


FINALS = [ExecutionState.COMPLETED, ExecutionState.FAILED, ExecutionState.CANCELLED]


@given(logs(), st.integers(-1, 60))
def test_a_replay_after_a_seq_is_the_full_replay_past_it(log, after):
    execution, events = log
    full = replayed(execution, events, 0)
    assert replayed(execution, events, after) == [item for item in full if item.seq > after]


@given(logs())
def test_a_replay_keeps_the_log_order_and_shows_each_state_as_it_was(log):
    execution, events = log
    items = replayed(execution, events, 0)
    assert [item.seq for item in items] == [event.seq for event in events]
    pause_output = None
    for item, event in zip(items, events, strict=True):
        if event.kind is EventKind.PAUSED:
            pause_output = event.value
        if event.kind is not EventKind.STATE:
            assert item == event
            continue
        assert isinstance(item, StateChange)
        shown = item.execution
        assert str(shown.state) == event.value
        if shown.state is ExecutionState.PAUSED:
            assert shown.output == pause_output
        elif shown.state is ExecutionState.RUNNING:
            assert shown.output is None and shown.error is None
        else:
            assert shown == execution  # a final state is the execution as it ended


@given(logs())
def test_only_the_current_state_closes_a_replay(log):
    execution, events = log
    items = replayed(execution, events, 0)
    assert caught_up(execution, events) == (execution.state.ends_stream)
    if caught_up(execution, events):
        assert ends(items[-1]) and items[-1].seq == events[-1].seq


@given(st.integers(0, MAX_EVENT_ID), st.text(max_size=20))
def test_an_sse_message_carries_its_id_line(seq, text):
    message = sse_message("state", {"v": text}, seq)
    lines = message.split("\n")
    assert lines[0] == f"id: {seq}" and lines[1] == "event: state"
    assert json.loads(lines[2].removeprefix("data: ")) == {"v": text}
    assert message.endswith("\n\n") and message.count("\n") == 4
    assert sse_message("state", {"v": text}).startswith("event: state\n")
