"""The server's side of `--executor workers`: executions are persisted, never run here.

`Dispatcher` answers the same calls as the Runtime (start, run, resume, get, wait, watch,
cancel, recover, close) through the store only, so any replica can serve any execution:
`start` validates the input and stores a CREATED execution for a worker to claim; a resume
stores the RESUMED event with the RUNNING state (a worker claims it like a new one). The
store's signals tell workers about both.

Waiting and watching read the execution again whenever the store signals a change to it, and
otherwise every so often (10 ms growing to 1 s): the reads are what the answer comes from, the
signals only make them come sooner, so a lost signal costs time, never a wrong answer. The
listener is made before the first read, so a change that lands between a read and the next
wait still wakes that wait.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from attrs import evolve

from core.deadlines import resumed
from core.errors import AlreadyExists, FluxError, InvalidState
from core.model import (
    NO_LAUNCH,
    EventKind,
    Execution,
    ExecutionEvent,
    ExecutionState,
    Launch,
    WorkflowVersion,
)
from core.pauses import already_finished, not_resumable, pending_pause
from core.stream import CREATION_SEQ, StateChange, StreamItem, caught_up, replayed
from engine import inputs
from engine.live import new_execution_id
from engine.registration import WorkflowLoader
from engine.runs import new_execution
from engine.runtime import stored_execution
from ports.executions import ExecutionLog, ExecutionSignals

CANCEL_ATTEMPTS = 5  # a cancel racing the execution's own writes reads it again this often
FIRST_POLL = 0.01  # seconds; each wait grows by half up to MAX_POLL, or ends at a signal
MAX_POLL = 1.0


class Dispatcher:
    def __init__(
        self,
        executions: ExecutionLog,
        signals: ExecutionSignals,
        *,
        loader: WorkflowLoader | None = None,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = new_execution_id,
        first_poll: float = FIRST_POLL,
        max_poll: float = MAX_POLL,
    ) -> None:
        self._store = executions
        self._signals = signals
        self._loader = loader or WorkflowLoader()
        self._clock = clock
        self._new_id = new_id
        self._first_poll = first_poll
        self._max_poll = max(first_poll, max_poll)

    async def start(
        self, version: WorkflowVersion, body: Any, launch: Launch = NO_LAUNCH
    ) -> Execution:
        """Validate the input and persist a CREATED execution; returns at once."""
        loaded = self._loader.cached(version) or await self._loader.load(version)
        inputs.convert_input(loaded.input_type, body)  # raises the same errors as embedded
        execution = new_execution(
            version, body, ExecutionState.CREATED, launch, new_id=self._new_id, clock=self._clock
        )
        await self._store.create(execution)
        return execution

    async def run(
        self,
        version: WorkflowVersion,
        body: Any,
        launch: Launch = NO_LAUNCH,
        started: Callable[[Execution], None] | None = None,
    ) -> Execution:
        execution = await self.start(version, body, launch)
        if started is not None:
            started(execution)
        return await self.wait(execution.execution_id)

    async def resume(self, execution_id: str, body: Any, *, wait: bool) -> Execution:
        execution = await self.get(execution_id)
        if execution.state is not ExecutionState.PAUSED:
            raise not_resumable(execution_id, execution.state)
        log = await self._store.events(execution_id)
        key = pending_pause(execution, log)
        now = self._clock()
        seq = max((event.seq for event in log), default=0)
        running = evolve(
            resumed(execution, now),
            state=ExecutionState.RUNNING,
            output=None,
            pause_name=None,
            updated_at=now,
        )
        events = [
            ExecutionEvent(execution_id, seq + 1, EventKind.RESUMED, key, body, now),
            ExecutionEvent(execution_id, seq + 2, EventKind.STATE, "", str(running.state), now),
        ]
        try:
            saved = await self._store.save_if(running, events, [ExecutionState.PAUSED])
        except AlreadyExists:
            # Another replica resumed it first: its events took these sequence numbers.
            raise not_resumable(execution_id, ExecutionState.RUNNING) from None
        if not saved:  # resumed, cancelled or timed out by someone else first
            raise not_resumable(execution_id, (await self.get(execution_id)).state)
        return await self.wait(execution_id) if wait else running

    async def get(self, execution_id: str) -> Execution:
        return await stored_execution(self._store, execution_id)

    async def wait(self, execution_id: str) -> Execution:
        """The execution once a worker has brought it to a final state or a pause."""
        async with contextlib.aclosing(self._polled(execution_id)) as polled:
            async for execution in polled:
                if execution.state.ends_stream:
                    return execution
        raise AssertionError("unreachable: polling ends only by returning")

    async def watch(self, execution_id: str) -> AsyncIterator[StreamItem]:
        """The execution's log as stream items, polled, until the stream ends: first the state
        it was created in, then each logged event and state in log order."""
        shown_seq = CREATION_SEQ - 1  # nothing shown yet
        async with contextlib.aclosing(self._polled(execution_id)) as polled:
            async for execution in polled:
                # The log is read after the execution, so it may hold a state newer than it.
                log = await self._store.events(execution_id)
                if shown_seq < CREATION_SEQ:
                    yield StateChange(as_created(execution), CREATION_SEQ)
                    shown_seq = CREATION_SEQ
                for item in replayed(execution, log, shown_seq):
                    if _ahead_of(item, execution):
                        break  # a final state's output is on the execution: read it again
                    yield item
                    shown_seq = item.seq
                if caught_up(execution, log):
                    return

    async def cancel(self, execution_id: str) -> Execution:
        """Mark it CANCELLED; a worker running it loses its lease and stops writing. Written
        only from the state read: a worker's final save or another replica that lands first
        wins, and the answer is what it wrote."""
        for _ in range(CANCEL_ATTEMPTS):
            execution = await self.get(execution_id)
            if execution.state is ExecutionState.CANCELLED:
                return execution  # cancelled already: the same answer again
            if execution.state.is_final:
                raise already_finished(execution)
            cancelled = await self._cancel_from(execution)
            if cancelled is not None:
                return cancelled
        state = (await self.get(execution_id)).state
        raise InvalidState(
            f"execution {execution_id} kept changing while being cancelled; try again",
            state=str(state),
            execution_id=execution_id,
        )

    async def _cancel_from(self, execution: Execution) -> Execution | None:
        execution_id = execution.execution_id
        log = await self._store.events(execution_id)
        seq = max((event.seq for event in log), default=0)
        now = self._clock()
        cancelled = evolve(execution, state=ExecutionState.CANCELLED, updated_at=now)
        state = ExecutionEvent(
            execution_id, seq + 1, EventKind.STATE, "", str(cancelled.state), now
        )
        try:
            saved = await self._store.save_if(cancelled, [state], [execution.state])
        except AlreadyExists:
            return None  # its log grew meanwhile: read it again
        return cancelled if saved else None

    def abandon_waiters(self, error: Callable[[str], FluxError]) -> None:
        """Waits here are polls of the store: the server's own shutdown ends them."""

    async def recover(self) -> list[str]:
        """Nothing to recover here: workers take over what a dead worker left."""
        return []

    async def close(self) -> None:
        return None

    async def _polled(self, execution_id: str) -> AsyncGenerator[Execution, None]:
        """The execution, read again after each change signalled or each poll interval."""
        changes = await self._signals.listen(execution_id)
        try:
            delay = self._first_poll
            while True:
                yield await self.get(execution_id)
                await changes.wait(delay)
                delay = min(self._max_poll, delay * 1.5)
        finally:
            changes.close()


def as_created(execution: Execution) -> Execution:
    """`execution` as it was stored first: a start stores it CREATED, before any log entry."""
    return evolve(execution, state=ExecutionState.CREATED, output=None, error=None, pause_name=None)


def _ahead_of(item: StreamItem, execution: Execution) -> bool:
    return (
        isinstance(item, StateChange)
        and item.execution.state.is_final
        and not execution.state.is_final
    )
