"""The port between the call use cases and whatever runs executions: the runtime of this
process, or the dispatcher that leaves running them to worker processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from core.errors import FluxError
from core.model import NO_LAUNCH, Execution, Launch, WorkflowVersion
from core.stream import StreamItem


class Executor(Protocol):
    async def start(
        self, version: WorkflowVersion, body: Any, launch: Launch = NO_LAUNCH
    ) -> Execution:
        """Validate `body` against the workflow's input, store a new execution (as `launch`
        says) and schedule it; returns at once. Raises `InputValidationError` before anything
        is stored, `AlreadyExists` when `launch` names an execution id that is taken."""

    async def run(
        self,
        version: WorkflowVersion,
        body: Any,
        launch: Launch = NO_LAUNCH,
        started: Callable[[Execution], None] | None = None,
    ) -> Execution:
        """Store the execution and wait until it completes, fails, is cancelled or pauses;
        `started` is told the execution as soon as it is stored (a caller whose wait is
        bounded learns what to answer with)."""

    async def resume(self, execution_id: str, body: Any, *, wait: bool) -> Execution:
        """Answer the pending pause of a PAUSED execution and run it on; `InvalidState` when it
        is not PAUSED."""

    async def get(self, execution_id: str) -> Execution:
        """The execution as stored; `ExecutionNotFound` when there is none."""

    async def wait(self, execution_id: str) -> Execution:
        """The execution once it settles (final or PAUSED)."""

    def watch(self, execution_id: str) -> AsyncIterator[StreamItem]:
        """State changes (each with the seq of its state's log entry) and task events until a
        state that ends the stream."""

    async def cancel(self, execution_id: str) -> Execution:
        """Cancel a created, running or paused execution; a CANCELLED one is returned as it is,
        `InvalidState` for a completed or failed one."""

    def abandon_waiters(self, error: Callable[[str], FluxError]) -> None:
        """Every caller still waiting for an execution to settle gets `error(execution_id)`
        raised instead; the executions themselves go on (or stay on disk)."""

    async def recover(self) -> list[str]:
        """Take over the executions a previous process left in progress; their ids."""

    async def close(self) -> None: ...
