"""Deadline arithmetic of executions: pure functions of an execution and the time now.

An execution's `deadline` is the epoch second at which it fails if it is still in the state it
is in. While it runs, that is the end of its running time (`WorkflowTimeout`); while it is
PAUSED, the end of the pause's own timeout (`PauseTimeout`), and the running time it had left
waits in `time_left`, so time spent paused never counts against the workflow's timeout.
"""

from __future__ import annotations

import math
from typing import Any

from attrs import evolve

from core.model import Execution, ExecutionError, ExecutionState

WORKFLOW_TIMEOUT = "WorkflowTimeout"
PAUSE_TIMEOUT = "PauseTimeout"


def valid_timeout(value: Any, what: str = "timeout") -> float | None:
    """`value` as seconds (None stays None); `ValueError` naming `what` unless it is a finite
    number above zero. Booleans are refused: `timeout=True` is a mistake, not one second."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number of seconds, got {type(value).__name__}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{what} must be a positive number of seconds, got {value!r}")
    return seconds


def paused(execution: Execution, now: float, pause_timeout: float | None) -> Execution:
    """`execution` as it pauses at `now`: the running time it has left is put aside, and the
    deadline becomes the pause's own (None: the pause may wait forever)."""
    left = None if execution.deadline is None else max(0.0, execution.deadline - now)
    deadline = None if pause_timeout is None else now + pause_timeout
    return evolve(execution, deadline=deadline, time_left=left)


def resumed(execution: Execution, now: float) -> Execution:
    """`execution` as it runs again at `now`: its deadline is the running time it had left
    from now on (None when it had no deadline)."""
    left = execution.time_left
    deadline = None if left is None else now + left
    return evolve(execution, deadline=deadline, time_left=None)


def overdue(execution: Execution, now: float) -> bool:
    """True when `execution` is past its deadline in a state that has one."""
    return (
        execution.deadline is not None
        and execution.deadline <= now
        and (execution.state.in_progress or execution.state is ExecutionState.PAUSED)
    )


def timeout_error(execution: Execution) -> ExecutionError:
    """The error an execution ends with when its deadline passes in the state it is in."""
    if execution.state is ExecutionState.PAUSED:
        name = execution.pause_name or "?"
        return ExecutionError(PAUSE_TIMEOUT, f"the pause '{name}' was not resumed in time")
    return ExecutionError(WORKFLOW_TIMEOUT, "the execution ran past its timeout")


def timed_out(execution: Execution, now: float) -> Execution:
    """`execution` FAILED at `now` because its deadline passed (the deadline stays, as the
    record of when)."""
    return evolve(
        execution,
        state=ExecutionState.FAILED,
        error=timeout_error(execution),
        output=None,
        pause_name=None,
        time_left=None,
        updated_at=now,
    )
