"""The seam between the SDK and whatever runs it.

The SDK holds no behaviour of its own: while a workflow runs, the runtime puts a replayer in
`current_replayer` and every durable call goes through it. Outside a run the contextvar is
empty and tasks are plain calls, so workflow code stays testable without a server.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from flux.task import Task


class Replayer(Protocol):
    def task_key(self, task: Task) -> str:
        """Allocate the deterministic key of the next call of `task` in this run."""

    async def call_task(self, task: Task, key: str, args: tuple, kwargs: dict) -> Any:
        """Answer a task call from the log, or run it and persist its result."""

    async def pause(self, name: str, output: Any) -> Any:
        """Answer a pause point with its resume body, or suspend the run."""

    async def sleep(self, seconds: float) -> None:
        """Sleep once per run, however many times the run is replayed."""


current_replayer: ContextVar[Replayer | None] = ContextVar("flux_replayer", default=None)
