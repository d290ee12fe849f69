"""Properties of the deadline arithmetic (core/deadlines.py): paused time never counts against a
workflow's timeout, a pause's own deadline is its timeout from the moment it pauses, and only
a finite positive number of seconds is a timeout."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import deadlines
from core.model import Execution, ExecutionState, WorkflowRef

times = st.floats(min_value=0, max_value=1e9, allow_nan=False)
spans = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False)
states = st.sampled_from(list(ExecutionState))


def execution(state: ExecutionState, deadline: float | None, time_left=None) -> Execution:
    return Execution("e", WorkflowRef("ns", "wf"), 1, state, deadline=deadline, time_left=time_left)


@given(start=times, timeout=spans, ran=st.floats(0, 1), paused_for=spans, pause=st.none() | spans)
def test_paused_time_is_not_counted(start, timeout, ran, paused_for, pause):
    running = execution(ExecutionState.RUNNING, start + timeout)
    pause_at = start + ran * timeout
    held = deadlines.paused(running, pause_at, pause)
    assert held.time_left == pytest.approx(start + timeout - pause_at, abs=1e-6)
    assert held.deadline == (None if pause is None else pause_at + pause)
    again = deadlines.resumed(held, pause_at + paused_for)
    assert again.time_left is None
    # The running time left after the pause is the running time left before it.
    assert again.deadline - (pause_at + paused_for) == pytest.approx(held.time_left, abs=1e-6)


@given(now=times, pause=st.none() | spans, resume_at=times)
def test_no_deadline_stays_no_deadline_across_a_pause(now, pause, resume_at):
    held = deadlines.paused(execution(ExecutionState.RUNNING, None), now, pause)
    assert held.time_left is None
    assert deadlines.resumed(held, resume_at).deadline is None


@given(now=times, late=st.floats(0, 1e6), state=states)
def test_overdue_only_unfinished_executions_at_or_past_their_deadline(now, late, state):
    unfinished = state.in_progress or state is ExecutionState.PAUSED
    assert deadlines.overdue(execution(state, now - late), now) is unfinished
    assert not deadlines.overdue(execution(state, now + 1 + late), now)
    assert not deadlines.overdue(execution(state, None), now)


@given(state=st.sampled_from([ExecutionState.RUNNING, ExecutionState.CREATED]), now=times)
def test_a_running_execution_times_out_as_workflow_timeout(state, now):
    failed = deadlines.timed_out(execution(state, now), now)
    assert failed.state is ExecutionState.FAILED and failed.updated_at == now
    assert failed.error is not None and failed.error.type == deadlines.WORKFLOW_TIMEOUT


@given(now=times, left=spans)
def test_a_paused_execution_times_out_as_pause_timeout(now, left):
    paused = execution(ExecutionState.PAUSED, now, time_left=left)
    failed = deadlines.timed_out(paused, now)
    assert failed.error is not None and failed.error.type == deadlines.PAUSE_TIMEOUT
    assert failed.time_left is None and failed.pause_name is None


@given(seconds=st.floats(min_value=1e-9, allow_infinity=False) | st.integers(1, 10**9))
def test_a_positive_finite_number_is_a_timeout(seconds):
    assert deadlines.valid_timeout(seconds) == float(seconds)


@given(
    bad=st.floats(max_value=0)
    | st.just(math.inf)
    | st.just(math.nan)
    | st.integers(max_value=0)
    | st.booleans()
    | st.text()
    | st.lists(st.integers())
)
def test_anything_else_is_refused_with_the_reason(bad):
    with pytest.raises(ValueError, match="timeout"):
        deadlines.valid_timeout(bad)


def test_none_means_no_timeout():
    assert deadlines.valid_timeout(None) is None
