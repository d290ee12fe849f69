"""What an execution's event stream is made of, and how its durable log is replayed into one.

A stream shows task and pause events as they are (`ExecutionEvent`) and state changes as the
execution itself (`StateChange`), each with its sequence number in the execution's log: that
number is the stream event's `id`, and what a reattaching caller sends back as `Last-Event-ID`.
The state an execution was created in has no log entry of its own: it is shown with seq 0.

A task's start is shown live only (it is not written to the log), so a replay from the log has
gaps where those were; the numbers still only grow.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from attrs import evolve, frozen

from core.errors import InvalidRequest
from core.model import EventKind, Execution, ExecutionEvent, ExecutionState

CREATION_SEQ = 0  # the state an execution is created in: before any log entry
MAX_EVENT_ID = 2**63 - 1  # what every store keeps as a sequence number
_EVENT_ID = re.compile(r"[0-9]{1,19}")  # ASCII digits only: str.isdigit() also takes '²'


@frozen
class StateChange:
    """The execution as it is in a new state, and the seq of that state's log entry."""

    execution: Execution
    seq: int


StreamItem = ExecutionEvent | StateChange


def seq_of(item: StreamItem) -> int:
    return item.seq


def ends(item: StreamItem) -> bool:
    """Whether a stream stops after `item`: a final state, or a pause."""
    return isinstance(item, StateChange) and ExecutionState(item.execution.state).ends_stream


def parse_last_event_id(value: str | None) -> int:
    """The seq after which a reattached stream goes on: `Last-Event-ID` as sent by a caller
    (ASCII digits, 0 to 2**63-1, surrounding blanks ignored); absent or empty is 0, the start."""
    if value is None or not value.strip():
        return CREATION_SEQ
    text = value.strip()
    if not _EVENT_ID.fullmatch(text) or int(text) > MAX_EVENT_ID:
        raise InvalidRequest(
            f"header 'Last-Event-ID' must be an event id (an integer from 0 to {MAX_EVENT_ID}), "
            f"got {value[:40]!r}",
            header="Last-Event-ID",
        )
    return int(text)


def state_seq(execution: Execution, log: Sequence[ExecutionEvent]) -> int:
    """The seq of the log entry of the state `execution` is in (the latest such entry), or
    `CREATION_SEQ` when it is still in the state it was created in."""
    for event in reversed(log):
        if event.kind is EventKind.STATE and event.value == str(execution.state):
            return event.seq
    return CREATION_SEQ


def replayed(execution: Execution, log: Sequence[ExecutionEvent], after: int) -> list[StreamItem]:
    """The stream items of `log` whose seq is above `after`, in log order.

    `execution` is the execution as read after the log: a state entry of the log is shown as
    the execution was in that state. Only a final state's output and error live on the
    execution; a pause's output is the value of the pause event logged just before it; any other
    state has no output.
    """
    items: list[StreamItem] = []
    pause_output = None
    for event in log:
        if event.kind is EventKind.PAUSED:
            pause_output = event.value
        if event.seq <= after:
            continue
        if event.kind is EventKind.STATE:
            items.append(StateChange(as_in(execution, event, pause_output), event.seq))
        else:
            items.append(event)
    return items


def as_in(execution: Execution, state: ExecutionEvent, pause_output: object) -> Execution:
    """`execution` as it was when the log entry `state` was written."""
    entered = ExecutionState(str(state.value))
    if entered.is_final:
        if entered is execution.state:
            return execution
        return evolve(execution, state=entered, output=None, error=None, pause_name=None)
    if entered is ExecutionState.PAUSED:
        return evolve(execution, state=entered, output=pause_output, error=None)
    return evolve(execution, state=entered, output=None, error=None, pause_name=None)


def caught_up(execution: Execution, log: Sequence[ExecutionEvent]) -> bool:
    """Whether `log` already ends the stream: the execution (read after the log) is in a state
    that ends it, and that state's entry is the log's latest state entry."""
    if not execution.state.ends_stream:
        return False
    states = [event for event in log if event.kind is EventKind.STATE]
    return bool(states) and states[-1].value == str(execution.state)
