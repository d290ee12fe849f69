"""Making a new execution, and what a stored one needs to run again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.errors import InvalidWorkflowSource
from core.model import Execution, ExecutionError, ExecutionState, Launch, WorkflowVersion
from engine import inputs
from engine.registration import LoadedWorkflow, WorkflowLoader
from engine.replay import error_of


def new_execution(
    version: WorkflowVersion,
    body: Any,
    state: ExecutionState,
    launch: Launch,
    *,
    new_id: Callable[[], str],
    clock: Callable[[], float],
) -> Execution:
    now = clock()
    return Execution(
        execution_id=launch.execution_id or new_id(),
        ref=version.info.ref,
        version=version.info.version,
        state=state,
        input=body,
        created_at=now,
        updated_at=now,
        service=launch.service,
        deadline=None if launch.timeout is None else now + launch.timeout,
        callback_url=launch.callback_url,
    )


async def reload(
    loader: WorkflowLoader, execution: Execution
) -> tuple[LoadedWorkflow, Any] | ExecutionError:
    """The workflow and converted input of a stored execution, or why it cannot run."""
    ref, version = execution.ref, execution.version
    try:
        loaded = await loader.stored(ref, version)
    except InvalidWorkflowSource as exc:
        return ExecutionError("InvalidWorkflowSource", exc.message)
    if loaded is None:
        return ExecutionError(
            "WorkflowNotFound",
            f"workflow '{ref}' version {version} is no longer registered; "
            "the execution cannot continue",
        )
    try:
        return loaded, inputs.convert_input(loaded.input_type, execution.input)
    except Exception as exc:
        return error_of(exc)
