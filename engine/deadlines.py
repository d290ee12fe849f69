"""The deadline sweeper: fails executions whose deadline passed while nothing was running them.

Whoever drives an execution enforces its running deadline itself (the runtime's timer in the
process that runs it; the worker pool kills a worker stuck past one). What no executor drives
is left to this sweeper, which the server starts with its executor:

- at start, before anything is recovered, every execution past its deadline: a deadline that
  passed while the server was down is enforced instead of replaying the execution;
- then every `every` seconds, PAUSED executions past their pause's deadline (`PauseTimeout`).

Each failure is a conditional save (`ExecutionLog.save_if`) from the state the sweeper read, so
a resume, a cancel, a finishing worker or another server's sweeper that wrote first wins, and
the sweeper writes nothing. The query reads the `deadline` index, at most `batch` rows a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from core import deadlines
from core.errors import AlreadyExists
from core.model import IN_PROGRESS, EventKind, Execution, ExecutionEvent, ExecutionState
from engine.live import Live
from engine.loop_threads import LoopThread
from engine.replay import Outcome
from ports.executions import ExecutionLog

log = logging.getLogger("flux.deadlines")

SWEEP_EVERY = 1.0  # seconds between two sweeps of paused executions
BATCH = 100  # executions read per query
MAX_BATCHES = 50  # per sweep: a backlog larger than this waits for the next sweep
STUCK_WAIT = 2.0  # seconds a run past its deadline on a stuck loop thread is waited for

EVERY_UNFINISHED_STATE = (*IN_PROGRESS, ExecutionState.PAUSED)
PAUSED = (ExecutionState.PAUSED,)


class DeadlineSweeper:
    def __init__(
        self,
        store: ExecutionLog,
        *,
        every: float = SWEEP_EVERY,
        batch: int = BATCH,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._every = every
        self._batch = batch
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    async def sweep(self, states: Sequence[ExecutionState] = PAUSED) -> list[Execution]:
        """Fail the executions in `states` whose deadline has passed; the ones it failed."""
        failed: list[Execution] = []
        seen: set[str] = set()  # left as they were (another state, or a writer won)
        for _ in range(MAX_BATCHES):
            now = self._clock()
            limit = self._batch + len(seen)
            found = await self._store.overdue(now, limit)
            fresh = [e for e in found if e.execution_id not in seen]
            for execution in fresh:
                if execution.state in states and await self._fail(execution, now):
                    failed.append(execution)
                else:
                    seen.add(execution.execution_id)
            if not fresh or len(found) < limit:
                break
        return failed

    async def start(self) -> None:
        """Fail every execution whose deadline passed while no server ran (call it before
        recovery replays anything: such an execution is then not replayed), then sweep paused
        executions every `every` seconds until `stop()`."""
        await self.sweep(EVERY_UNFINISHED_STATE)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._periodically())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _periodically(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            try:
                await self.sweep(PAUSED)
            except Exception:
                # Storage trouble: the next sweep tries again; deadlines are only late.
                log.exception("the deadline sweep failed; retrying in %g s", self._every)

    async def _fail(self, execution: Execution, now: float) -> bool:
        failed = deadlines.timed_out(execution, now)
        events = await self._store.events(execution.execution_id)
        seq = max((event.seq for event in events), default=0) + 1
        state = ExecutionEvent(
            execution.execution_id, seq, EventKind.STATE, "", str(failed.state), now
        )
        try:
            saved = await self._store.save_if(failed, [state], [execution.state])
        except AlreadyExists:
            return False  # someone wrote to its log meanwhile: it is theirs to settle
        if saved:
            assert failed.error is not None
            log.info("execution %s failed: %s", execution.execution_id, failed.error.type)
        return saved


async def in_time(
    run: Coroutine[Any, Any, Outcome],
    live: Live,
    clock: Callable[[], float],
    *,
    stuck_wait: float = STUCK_WAIT,
) -> Outcome:
    """`run` (a run of `live`'s execution to its next stop), or, once its deadline passes,
    FAILED `WorkflowTimeout`: the run is cancelled at the deadline as a cancel would, so the
    workflow stops at its next await.

    Code that never awaits cannot be stopped from its own process. On the main loop nothing
    here runs until it yields (the worker pool kills such a worker, engine/pool.py). On a loop
    thread, the failure waits up to `stuck_wait` seconds for the thread to answer again: a
    worker of the pool keeps holding the run meanwhile, and is killed for it."""
    execution = live.execution
    deadline = execution.deadline
    if deadline is None:
        return await run
    left = deadline - clock()
    if left <= 0:
        run.close()  # past it already (a recovered execution): it does not run again
        return Outcome(ExecutionState.FAILED, error=deadlines.timeout_error(execution))
    timer = asyncio.timeout(left)
    try:
        async with timer:
            return await run
    except TimeoutError:
        if not timer.expired():
            raise
    thread = live.thread
    if thread is not None and not await answers(thread, stuck_wait):
        log.warning(
            "execution %s ran past its deadline in code that does not yield; its thread "
            "(flux-loop-%d) is left to it",
            execution.execution_id,
            thread.index,
        )
    return Outcome(ExecutionState.FAILED, error=deadlines.timeout_error(execution))


async def answers(thread: LoopThread, within: float) -> bool:
    """Whether `thread`'s loop runs a callback within `within` seconds (one whose code never
    yields holds it)."""
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[bool] = loop.create_future()

    def tell() -> None:
        if not answered.done():
            answered.set_result(True)

    def probe() -> None:
        with contextlib.suppress(RuntimeError):  # the main loop closed meanwhile
            loop.call_soon_threadsafe(tell)

    try:
        thread.loop.call_soon_threadsafe(probe)
        return await asyncio.wait_for(answered, within)
    except RuntimeError:
        return True  # its loop is closed: nothing holds it any more
    except TimeoutError:
        return False
