"""The server's executor when workflow code runs in local worker processes (the default).

The server stores every execution and its log, and runs no workflow code: a new or resumed run
waits in `pending` until a worker has room, and is then assigned to it with its log. The worker
replays and runs it (the same `ExecutionWorker` as `flux start worker`, over engine/linked.py)
and writes through the server, which makes each write durable before it answers and knows at
once when a run settles. The server keeps the leases in memory: it is the only one that hands
them out. A worker that dies or stalls loses its runs; each is replayed on another worker from
its log, and a run that has taken three workers down with it is FAILED (`WorkerCrashed`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

from attrs import evolve

from core.deadlines import overdue, resumed, timeout_error
from core.errors import AlreadyExists, FluxError
from core.model import (
    IN_PROGRESS,
    NO_LAUNCH,
    EventKind,
    Execution,
    ExecutionError,
    ExecutionEvent,
    ExecutionState,
    Launch,
    WorkflowVersion,
)
from core.pauses import already_finished, not_resumable, pending_pause
from core.stream import StreamItem
from engine import wire
from engine.live import (
    Watched,
    new_execution_id,
    state_event,
    stored_execution,
    stored_state,
)
from engine.pool_requests import WorkerRequests
from engine.runs import new_execution
from engine.supervisor import Spawn, Supervisor, WorkerProcess
from engine.tracking import Tracking
from ports.catalog import WorkflowVersions
from ports.executions import ExecutionLog

log = logging.getLogger("flux.workers")

CRASHES_ALLOWED = 3  # deaths of a worker while running one execution before it is FAILED
DEFAULT_CAPACITY = 64  # runs one worker process holds at once
DEFAULT_LEASE = 3.0  # seconds a holding worker may go without renewing before it is killed
# A worker still holding a run this long past the run's deadline is stuck in code that never
# awaits (its own timer fails the run at the deadline otherwise): it is killed.
DEADLINE_GRACE = 1.0
DEADLINE_CHECK = 0.25  # seconds between two looks at the held runs' deadlines
UNFINISHED = (*IN_PROGRESS, ExecutionState.PAUSED)
FINISH_ATTEMPTS = 5  # a settle racing a worker's writes to the log reads the log again


class LocalPool(WorkerRequests):
    def __init__(
        self,
        executions: ExecutionLog,
        versions: WorkflowVersions,
        spawn: Spawn,
        *,
        workers: int,
        capacity: int = DEFAULT_CAPACITY,
        lease: float = DEFAULT_LEASE,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = new_execution_id,
    ) -> None:
        self._store = executions
        self._versions = versions
        self._capacity = capacity
        self._lease = lease
        self._clock = clock
        self._new_id = new_id
        self._pending: deque[tuple[Execution, list[ExecutionEvent]]] = deque()
        self._tracked: Tracking[Watched] = Tracking()
        self._owner: dict[str, WorkerProcess] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._deadline: dict[str, float] = {}  # of the runs handed to workers that have one
        self.supervisor = Supervisor(
            workers, spawn, serve=self._serve, on_lost=self._lost, stall_after=lease
        )

    async def open(self) -> None:
        await self.supervisor.start()
        self._keep(self._watch_deadlines())

    # -- ports.executor.Executor ------------------------------------------------------------

    async def start(
        self, version: WorkflowVersion, body: Any, launch: Launch = NO_LAUNCH
    ) -> Execution:
        execution = new_execution(
            version, body, ExecutionState.CREATED, launch, new_id=self._new_id, clock=self._clock
        )
        await self._store.create(execution)
        self._track(execution, keep_history=True).show([execution])
        self._enqueue(execution, [])
        return execution

    async def run(
        self,
        version: WorkflowVersion,
        body: Any,
        launch: Launch = NO_LAUNCH,
        started: Callable[[Execution], None] | None = None,
    ) -> Execution:
        # Stored RUNNING at once: nobody observes CREATED of a sync call, and it saves a write.
        execution = new_execution(
            version, body, ExecutionState.RUNNING, launch, new_id=self._new_id, clock=self._clock
        )
        await self._store.create(execution)
        if started is not None:
            started(execution)
        tracked = self._track(execution, keep_history=False)
        self._enqueue(execution, [])
        return await asyncio.shield(tracked.settled)

    async def resume(self, execution_id: str, body: Any, *, wait: bool) -> Execution:
        execution = await self.get(execution_id)
        if execution_id in self._tracked:
            raise not_resumable(execution_id, ExecutionState.RUNNING)
        log_ = await self._store.events(execution_id)
        key = pending_pause(execution, log_)
        # Tracked before the write below: a concurrent resume or cancel sees it as busy.
        tracked = self._track(execution, keep_history=not wait)
        try:
            now = self._clock()
            seq = _last_seq(log_)
            running = evolve(
                resumed(execution, now),
                state=ExecutionState.RUNNING,
                output=None,
                pause_name=None,
                updated_at=now,
            )
            events = [
                ExecutionEvent(execution_id, seq + 1, EventKind.RESUMED, key, body, now),
                state_event(running, seq + 2),
            ]
            if not await self._store.save_if(running, events, [ExecutionState.PAUSED]):
                # Failed at its pause's deadline, or cancelled, just before this resume.
                raise not_resumable(
                    execution_id, (await stored_execution(self._store, execution_id)).state
                )
        except BaseException:
            self._tracked.remove(tracked)
            raise
        tracked.execution = running
        tracked.state_seq = events[1].seq
        tracked.show([events[0], running])
        self._enqueue(running, [*log_, *events])
        return await asyncio.shield(tracked.settled) if wait else running

    async def get(self, execution_id: str) -> Execution:
        tracked = self._tracked.get(execution_id)
        if tracked is not None:
            return tracked.execution
        return await stored_execution(self._store, execution_id)

    async def wait(self, execution_id: str) -> Execution:
        tracked = self._tracked.get(execution_id)
        if tracked is not None:
            return await asyncio.shield(tracked.settled)
        return await self.get(execution_id)

    async def watch(self, execution_id: str) -> AsyncIterator[StreamItem]:
        async for item in self._tracked.watch(execution_id, partial(stored_state, self._store)):
            yield item

    async def cancel(self, execution_id: str) -> Execution:
        execution = await self.get(execution_id)
        if execution.state is ExecutionState.CANCELLED:
            return execution  # cancelled already: the same answer again
        if execution.state.is_final:
            raise already_finished(execution)
        # Whoever runs it loses its lease first: from here on its writes are refused.
        owner = self._owner.pop(execution_id, None)
        if owner is not None:
            owner.held.discard(execution_id)
            owner.send({"op": "revoke", "ids": [execution_id]})
            self._dispatch()
        self._pending = deque(run for run in self._pending if run[0].execution_id != execution_id)
        final = await self._finish(execution, ExecutionState.CANCELLED)
        if final.state is not ExecutionState.CANCELLED and final.state.is_final:
            raise already_finished(final)  # its worker's last write landed first
        return final

    def abandon_waiters(self, error: Callable[[str], FluxError]) -> None:
        self._tracked.abandon_waiters(error)

    async def recover(self) -> list[str]:
        """Queue what a previous server left CREATED or RUNNING; workers replay it as they
        come up. Nothing runs here, so the server answers before any of it has run."""
        recovered = []
        for execution in await self._store.in_states(IN_PROGRESS):
            if execution.execution_id in self._tracked:
                continue
            self._track(execution, keep_history=True)
            self._enqueue(execution, await self._store.events(execution.execution_id))
            recovered.append(execution.execution_id)
        return recovered

    async def close(self, grace: float = 1.0) -> None:
        """Stop the workers; what still runs stays RUNNING on disk for the next start."""
        await self.supervisor.stop(grace)
        for task in list(self._tasks):
            task.cancel()
        self._tracked.cancel_waiters()

    # -- assigning runs ---------------------------------------------------------------------

    def _enqueue(self, execution: Execution, log_: list[ExecutionEvent]) -> None:
        self._pending.append((execution, log_))
        self._dispatch()

    def _dispatch(self) -> None:
        """Hand pending runs to the least busy workers with room, one frame per worker."""
        batches: dict[WorkerProcess, list[dict[str, Any]]] = {}
        while self._pending:
            workers = [w for w in self.supervisor.ready() if len(w.held) < self._capacity]
            # One that missed its last renewal may be stuck in workflow code: new runs go
            # elsewhere while there is an elsewhere.
            workers = [w for w in workers if not self._late(w)] or workers
            if not workers:
                break
            worker = min(workers, key=lambda w: len(w.held))
            execution, log_ = self._pending.popleft()
            if self._late(worker):
                worker.given_while_late.add(execution.execution_id)
            if not worker.held:
                worker.last_renew = time.monotonic()  # its clock starts with its first run
            worker.held.add(execution.execution_id)
            self._owner[execution.execution_id] = worker
            self._deadline.pop(execution.execution_id, None)
            if execution.deadline is not None:
                self._deadline[execution.execution_id] = execution.deadline
            tracked = self._tracked.get(execution.execution_id)
            batches.setdefault(worker, []).append(
                {
                    "execution": wire.execution_out(execution),
                    "log": [wire.event_out(event) for event in log_],
                    "watched": tracked is not None and tracked.history is not None,
                }
            )
        for worker, runs in batches.items():
            worker.send({"op": "assign", "runs": runs})

    def _late(self, worker: WorkerProcess) -> bool:
        return bool(worker.held) and time.monotonic() - worker.last_renew > self._lease * 0.45

    # -- a worker lost ----------------------------------------------------------------------

    async def _lost(self, worker: WorkerProcess) -> None:
        held, worker.held = list(worker.held), set()
        for execution_id in held:
            if self._owner.get(execution_id) is worker:
                del self._owner[execution_id]
            try:
                await self._hand_on(execution_id, worker)
            except Exception:
                log.exception("could not hand execution %s on after its worker died", execution_id)
        self._dispatch()

    async def _hand_on(self, execution_id: str, worker: WorkerProcess) -> None:
        """What becomes of a run whose worker died: it failed at its deadline; or another run's
        deadline had the worker killed, or it was given to the worker once that had stopped
        answering (no crash counted for it either way); or it crashed."""
        execution = await self.get(execution_id)
        if not execution.state.in_progress:
            return
        if execution_id in worker.overdue or overdue(execution, self._clock()):
            self._deadline.pop(execution_id, None)
            await self._finish(execution, ExecutionState.FAILED, error=timeout_error(execution))
        elif worker.overdue or (worker.stalled and execution_id in worker.given_while_late):
            self._enqueue(execution, await self._store.events(execution_id))
        else:
            await self._crashed(execution, worker)

    async def _crashed(self, execution: Execution, worker: WorkerProcess) -> None:
        execution_id = execution.execution_id
        log_ = await self._store.events(execution_id)
        crashes = 1 + sum(1 for event in log_ if event.kind is EventKind.WORKER_LOST)
        seq = _last_seq(log_)
        lost = ExecutionEvent(
            execution_id,
            seq + 1,
            EventKind.WORKER_LOST,
            "",
            {"pid": worker.pid, "reason": worker.reason},
            self._clock(),
        )
        if crashes >= CRASHES_ALLOWED:
            error = ExecutionError(
                "WorkerCrashed",
                f"the worker process running it died {crashes} times (last: {worker.reason})",
            )
            await self._finish(execution, ExecutionState.FAILED, error=error, before=[lost])
            return
        await self._store.append([lost])
        self._enqueue(execution, [*log_, lost])

    # -- tracking ---------------------------------------------------------------------------

    async def _finish(
        self,
        execution: Execution,
        state: ExecutionState,
        *,
        error: ExecutionError | None = None,
        before: list[ExecutionEvent] | None = None,
    ) -> Execution:
        """Settle an execution that no worker runs any more, from here, unless it finished
        meanwhile (a worker's last write in flight when it was taken away): then what was
        stored first is the answer. `before`: events to log first (renumbered after the log)."""
        execution_id = execution.execution_id
        for _ in range(FINISH_ATTEMPTS):
            seq = _last_seq(await self._store.events(execution_id))
            events = [evolve(event, seq=seq + 1 + i) for i, event in enumerate(before or [])]
            final = evolve(execution, state=state, error=error, updated_at=self._clock())
            events.append(state_event(final, seq + 1 + len(events)))
            try:
                saved = await self._store.save_if(final, events, UNFINISHED)
            except AlreadyExists:
                continue  # its log grew meanwhile: read it again
            break
        else:
            saved = False
        if not saved:
            final = await stored_execution(self._store, execution_id)
            events = []
        tracked = self._tracked.get(execution_id)
        if tracked is not None and final.state.ends_stream:
            if saved:
                tracked.state_seq = events[-1].seq
            tracked.show([*events[:-1], final])
            self._tracked.settle(tracked, final)
        return final

    async def _watch_deadlines(self) -> None:
        """Kill a worker that still holds a run past the run's deadline and a grace: the
        worker's own timer fails a run at its deadline unless the run's code holds the
        worker's loop and never awaits, and then only a kill stops it."""
        while True:
            await asyncio.sleep(DEADLINE_CHECK)
            late_after = self._clock() - DEADLINE_GRACE
            for worker in self.supervisor.live():
                late = [i for i in worker.held if self._deadline.get(i, late_after) < late_after]
                if late and not worker.overdue:
                    worker.overdue.update(late)
                    log.warning(
                        "worker process %d (pid %d) holds execution %s past its deadline; "
                        "killing it",
                        worker.slot,
                        worker.pid,
                        late[0],
                    )
                    worker.kill(f"execution {late[0]} ran past its deadline")

    def _keep(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _track(self, execution: Execution, *, keep_history: bool) -> Watched:
        loop = asyncio.get_running_loop()
        return self._tracked.add(Watched(loop, execution, keep_history=keep_history))


def _last_seq(*logs: Any) -> int:
    return max((event.seq for log_ in logs for event in log_), default=0)
