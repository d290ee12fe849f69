"""An execution a runtime is driving: its latest stored state, the future its waiters share,
and what its watchers have been shown. It is also the replayer's `ports.replay.Channel`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import TYPE_CHECKING

from core.errors import ExecutionNotFound
from core.model import EventKind, Execution, ExecutionEvent
from core.stream import CREATION_SEQ, StateChange, StreamItem, ends, state_seq
from engine.loop_threads import LoopThread
from engine.replay import Outcome
from ports.executions import ExecutionLog

if TYPE_CHECKING:
    from engine.runtime import Runtime

Item = StreamItem
# What an executor shows: a state change may be given as the execution alone, and is then shown
# with the seq of the state entry last written for it (`Watched.state_seq`).
Shown = ExecutionEvent | StateChange | Execution


async def stored_execution(store: ExecutionLog, execution_id: str) -> Execution:
    """The stored execution; `ExecutionNotFound` when there is none."""
    found = await store.get(execution_id)
    if found is None:
        raise ExecutionNotFound(
            f"execution {execution_id} does not exist", execution_id=execution_id
        )
    return found


def new_execution_id() -> str:
    return uuid.uuid4().hex


class Watched:
    """An execution in progress that someone may wait for or watch: its latest stored state,
    the future its waiters share, and what its watchers have been shown."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, execution: Execution, *, keep_history: bool
    ) -> None:
        self.execution = execution
        self.execution_id = execution.execution_id
        self.state_seq = CREATION_SEQ  # the seq of the log entry of `execution`'s state
        self.settled: asyncio.Future[Execution] = loop.create_future()
        self.history: list[Item] | None = [] if keep_history else None
        self.queues: list[asyncio.Queue[Item]] = []

    def show(self, shown: Sequence[Shown]) -> None:
        items = [self.as_item(item) for item in shown]
        if self.history is not None:
            self.history.extend(items)
        for queue in self.queues:
            for item in items:
                queue.put_nowait(item)

    def as_item(self, item: Shown) -> Item:
        return StateChange(item, self.state_seq) if isinstance(item, Execution) else item

    def settle(self, execution: Execution) -> None:
        self.execution = execution
        if not self.settled.done():
            self.settled.set_result(execution)

    async def follow(self) -> AsyncIterator[Item]:
        """What the execution did since it started (or was resumed) here, then each change as
        it comes, until a state that ends the stream. Leaving early never affects the run."""
        backlog = (
            list(self.history)
            if self.history is not None
            else [StateChange(self.execution, self.state_seq)]
        )
        queue: asyncio.Queue[Item] = asyncio.Queue()
        self.queues.append(queue)
        try:
            for item in backlog:
                yield item
                if ends(item):
                    return
            while True:
                item = await queue.get()
                yield item
                if ends(item):
                    return
        finally:
            if queue in self.queues:
                self.queues.remove(queue)


class Live(Watched):
    """An execution this runtime is driving (or cancelling), and the replayer's channel to it."""

    def __init__(
        self, runtime: Runtime, execution: Execution, *, keep_history: bool, next_seq: int = 1
    ) -> None:
        super().__init__(runtime._main_loop(), execution, keep_history=keep_history)
        self.runtime = runtime
        self.cancel_requested = False
        # What to cancel while the workflow code runs: the driving task for a run on the main
        # loop, the future of the run on its loop thread otherwise.
        self.run: asyncio.Future[None] | concurrent.futures.Future[Outcome] | None = None
        self.thread: LoopThread | None = None  # None: the run shares the main loop
        self._seq = itertools.count(next_seq)

    # engine.replay.Channel

    def next_seq(self) -> int:
        return next(self._seq)

    def clock(self) -> float:
        return self.runtime._clock()

    def watched(self) -> bool:
        progress = self.runtime.progress
        return bool(self.queues) or (progress is not None and progress.watched(self.execution_id))

    def write(self, saved: list[ExecutionEvent], shown: list[ExecutionEvent]) -> Awaitable[None]:
        written = self.runtime._write(self, saved, shown)
        return written if self.thread is None else self.runtime._from_thread(written)

    def publish(self, shown: list[ExecutionEvent]) -> None:
        if self.thread is None:
            self.published(shown)
        else:
            self.runtime._main_loop_of_threads().call_soon_threadsafe(self.published, shown)

    # main loop only

    def published(self, shown: list[ExecutionEvent]) -> None:
        """Progress shown before it is written (a task started): watchers here, and those of
        the server a worker process reports to."""
        self.show(shown)
        progress = self.runtime.progress
        if progress is not None and progress.watched(self.execution_id):
            progress.show(self.execution_id, shown)

    def restart_seq(self, log: Sequence[ExecutionEvent]) -> None:
        self._seq = itertools.count(max((event.seq for event in log), default=0) + 1)
        self.state_seq = state_seq(self.execution, log)

    def state_event(self, execution: Execution) -> ExecutionEvent:
        """The log event of the state `execution` is in now; the execution is shown with its
        seq from here on."""
        event = state_event(execution, self.next_seq())
        self.state_seq = event.seq
        return event


def state_event(execution: Execution, seq: int) -> ExecutionEvent:
    """The log entry of the state `execution` is in, at `seq`."""
    return ExecutionEvent(
        execution.execution_id, seq, EventKind.STATE, "", str(execution.state), execution.updated_at
    )


async def stored_state(store: ExecutionLog, execution_id: str) -> StateChange:
    """The stored execution as a watcher of it is shown it, with its state's seq."""
    execution = await stored_execution(store, execution_id)
    return StateChange(execution, state_seq(execution, await store.events(execution_id)))
