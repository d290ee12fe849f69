"""The seam between the workflow SDK and the runtime that drives it.

While a workflow runs, the runtime puts a `Replayer` in `flux._hooks.current_replayer` and every
durable call of the SDK (task, pause, sleep) goes through it; the replayer in turn reaches the
runtime through a `Channel`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Protocol

from core.model import ExecutionEvent

if TYPE_CHECKING:
    from flux.task import Task


class Replayer(Protocol):
    def task_key(self, task: Task) -> str:
        """Allocate the deterministic key of the next call of `task` in this run."""

    async def call_task(self, task: Task, key: str, args: tuple, kwargs: dict) -> Any:
        """Answer a task call from the log, or run it and persist its result."""

    async def pause(self, name: str, output: Any, timeout: float | None = None) -> Any:
        """Answer a pause point with its resume body, or suspend the run (for at most `timeout`
        seconds, None: no limit)."""

    async def sleep(self, seconds: float) -> None:
        """Sleep once per run, however many times the run is replayed."""


class Channel(Protocol):
    """What a replayer needs from the runtime; every member is safe to call from a worker."""

    execution_id: str

    def next_seq(self) -> int: ...

    def clock(self) -> float: ...

    def watched(self) -> bool:
        """Whether anyone streams this execution right now."""

    def write(self, saved: list[ExecutionEvent], shown: list[ExecutionEvent]) -> Awaitable[None]:
        """Persist `saved` durably, then publish `shown`, on the main loop."""

    def publish(self, shown: list[ExecutionEvent]) -> None:
        """Publish without persisting; fire and forget."""
