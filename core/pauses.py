"""What a resume or a cancel may do, decided from the execution and its log alone."""

from __future__ import annotations

from collections.abc import Sequence

from core.errors import InvalidState
from core.model import EventKind, Execution, ExecutionEvent, ExecutionState


def not_resumable(execution_id: str, state: ExecutionState) -> InvalidState:
    return InvalidState(
        f"execution {execution_id} is {state}, only a PAUSED execution can be resumed",
        state=str(state),
        execution_id=execution_id,
    )


def already_finished(execution: Execution) -> InvalidState:
    """Why a finished execution cannot be cancelled (409)."""
    return InvalidState(
        f"execution {execution.execution_id} is already {execution.state}",
        state=str(execution.state),
        execution_id=execution.execution_id,
    )


def pending_pause(execution: Execution, log: Sequence[ExecutionEvent]) -> str:
    """The key of the pause point a resume of `execution` answers: the latest one not answered
    yet. `InvalidState` when the execution is not PAUSED or has no such point."""
    if execution.state is not ExecutionState.PAUSED:
        raise not_resumable(execution.execution_id, execution.state)
    resumed = {event.key for event in log if event.kind is EventKind.RESUMED}
    for event in reversed(log):
        if event.kind is EventKind.PAUSED and event.key not in resumed:
            return event.key
    raise InvalidState(
        f"execution {execution.execution_id} has no pending pause point",
        state=str(execution.state),
        execution_id=execution.execution_id,
    )
