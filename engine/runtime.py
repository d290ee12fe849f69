"""The durable execution runtime.

Every state change and task result is written through the ExecutionLog before anyone is
told about it; a run that stops (pause, crash, restart) continues by replaying the workflow
from the start against its log (engine/replay.py). The store, the waiters and the watchers live
on the caller's loop, which this module calls the main loop. Async workflow code runs there
too; sync workflows and ones caught blocking run on loop threads (engine/loop_guard.py,
engine/loop_threads.py). See docs/engine.md for the choices.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from attrs import evolve

from core.errors import ExecutionNotFound, InvalidState, InvalidWorkflowSource
from core.model import (
    IN_PROGRESS,
    EventKind,
    Execution,
    ExecutionError,
    ExecutionEvent,
    ExecutionState,
    WorkflowVersion,
)
from core.pauses import not_resumable, pending_pause
from engine import inputs
from engine.loop_guard import DEFAULT_LIMIT, LoopGuard
from engine.loop_threads import LoopThread, LoopThreadPool
from engine.registration import LoadedWorkflow, WorkflowLoader
from engine.replay import Outcome, Replayer, error_of
from flux.context import ExecutionContext
from ports.executions import ExecutionLog

log = logging.getLogger("flux.engine")

Item = ExecutionEvent | Execution

_RECENT_HISTORIES = 512
TASK_THREADS = 32  # sync tasks running at once, over all executions


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


class _Live:
    """An execution this runtime is driving (or cancelling): its latest stored state, the
    future its waiters share, and what its watchers have been shown."""

    def __init__(
        self, runtime: Runtime, execution: Execution, *, keep_history: bool, next_seq: int = 1
    ) -> None:
        self.runtime = runtime
        self.execution = execution
        self.execution_id = execution.execution_id
        self.settled: asyncio.Future[Execution] = runtime._main_loop().create_future()
        self.history: list[Item] | None = [] if keep_history else None
        self.queues: list[asyncio.Queue[Item]] = []
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
        return bool(self.queues)

    def write(self, saved: list[ExecutionEvent], shown: list[ExecutionEvent]) -> Awaitable[None]:
        written = self.runtime._write(self, saved, shown)
        return written if self.thread is None else self.runtime._from_thread(written)

    def publish(self, shown: list[ExecutionEvent]) -> None:
        if self.thread is None:
            self.show(shown)
        else:
            self.runtime._main_loop_of_threads().call_soon_threadsafe(self.show, shown)

    # main loop only

    def restart_seq(self, log: Sequence[ExecutionEvent]) -> None:
        self._seq = itertools.count(max((event.seq for event in log), default=0) + 1)

    def show(self, items: Sequence[Item]) -> None:
        if self.history is not None:
            self.history.extend(items)
        for queue in self.queues:
            for item in items:
                queue.put_nowait(item)


class Runtime:
    """Starts, runs, resumes, cancels and recovers executions.

    `loader` turns the WorkflowVersion given to start/run into a loaded workflow, and loads the
    stored version of an execution where only the execution is known (resume, recovery). Every
    coroutine method must be
    awaited on one event loop, the main loop. Async workflows run on the main loop unless
    `share_loop` is False or they were caught blocking it (`blocking_limit`); the rest run on
    `loop_threads` threads.
    """

    def __init__(
        self,
        executions: ExecutionLog,
        *,
        loader: WorkflowLoader,
        loop_threads: int = 4,
        task_threads: int = TASK_THREADS,
        blocking_limit: float = DEFAULT_LIMIT,
        share_loop: bool = True,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = new_execution_id,
    ) -> None:
        self._store = executions
        self._loader = loader
        self._pool = LoopThreadPool(loop_threads)
        # Sync tasks of every run, wherever the run is: they may block (that is what they are
        # for), so they get a pool of their own rather than the loop's small default one.
        self._task_threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=task_threads, thread_name_prefix="flux-task"
        )
        self._guard = LoopGuard(blocking_limit)
        self._share_loop = share_loop
        self._clock = clock
        self._new_id = new_id
        self._loop: asyncio.AbstractEventLoop | None = None
        self._live: dict[str, _Live] = {}
        self._recent: OrderedDict[str, list[Item]] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- public API --------------------------------------------------------------------------

    async def start(self, version: WorkflowVersion, body: Any) -> Execution:
        """Validate the input, persist a CREATED execution and schedule it; returns at once."""
        loaded, value = await self._prepare(version, body)
        execution = self._new_execution(version, body, ExecutionState.CREATED)
        await self._store.create(execution)
        live = self._track(execution, keep_history=True)
        live.show([execution])
        self._spawn(live, loaded, value, (), mark_running=True)
        return execution

    async def run(self, version: WorkflowVersion, body: Any) -> Execution:
        """Start and wait until the execution completes, fails, is cancelled or pauses."""
        loaded, value = await self._prepare(version, body)
        # Stored as RUNNING straight away: a sync call has no observer of CREATED, and it saves
        # a write. A crash before the end still leaves it for recover().
        execution = self._new_execution(version, body, ExecutionState.RUNNING)
        await self._store.create(execution)
        live = self._track(execution, keep_history=False)
        self._spawn(live, loaded, value, (), mark_running=False)
        return await asyncio.shield(live.settled)

    async def resume(self, execution_id: str, body: Any, *, wait: bool) -> Execution:
        """Answer the pending pause point with `body` and replay. With `wait`, returns once the
        execution settles again; otherwise returns the RUNNING execution at once."""
        execution = await self._existing(execution_id)
        busy = self._live.get(execution_id)
        if busy is not None or execution.state is not ExecutionState.PAUSED:
            # A live one is being resumed or cancelled right now: it is no longer waiting.
            state = ExecutionState.RUNNING if busy is not None else execution.state
            raise not_resumable(execution_id, state)
        # Claimed before the first await below: a concurrent resume or cancel sees it as busy.
        live = self._track(execution, keep_history=not wait)
        try:
            log_ = await self._store.events(execution_id)
            live.restart_seq(log_)
            key = pending_pause(execution, log_)
            reloaded = await self._reload(execution)
            if isinstance(reloaded, ExecutionError):
                return await self._settle_now(live, ExecutionState.FAILED, error=reloaded)
            loaded, value = reloaded
            now = self._clock()
            resumed = ExecutionEvent(
                execution_id, live.next_seq(), EventKind.RESUMED, key, body, now
            )
            running = evolve(
                execution,
                state=ExecutionState.RUNNING,
                output=None,
                pause_name=None,
                updated_at=now,
            )
            await self._store.save(running, [resumed, self._state_event(live, running)])
        except BaseException:
            self._forget(live)
            raise
        live.execution = running
        live.show([resumed, running])
        self._spawn(live, loaded, value, [*log_, resumed], mark_running=False)
        if wait:
            return await asyncio.shield(live.settled)
        return running

    async def get(self, execution_id: str) -> Execution:
        live = self._live.get(execution_id)
        if live is not None:
            return live.execution  # always what the store holds, without the round trip
        return await self._existing(execution_id)

    async def wait(self, execution_id: str) -> Execution:
        """The execution once it settles (final or PAUSED); at once if it is not running here."""
        live = self._live.get(execution_id)
        if live is not None:
            return await asyncio.shield(live.settled)
        return await self._existing(execution_id)

    async def watch(self, execution_id: str) -> AsyncIterator[Item]:
        """Live progress: Execution values for state changes, ExecutionEvents for task and pause
        events, ending after a state that ends the stream. What the execution did since it
        started (or was resumed) is replayed first, so subscribing late misses nothing.
        Leaving the iteration early never affects the execution."""
        live = self._live.get(execution_id)
        if live is None:
            recent = self._recent.get(execution_id)
            if recent is not None:
                for item in recent:
                    yield item
                return
            execution = await self._existing(execution_id)
            live = self._live.get(execution_id)
            if live is None:
                yield execution
                return
        backlog = list(live.history) if live.history is not None else [live.execution]
        queue: asyncio.Queue[Item] = asyncio.Queue()
        live.queues.append(queue)
        try:
            for item in backlog:
                yield item
                if _ends(item):
                    return
            while True:
                item = await queue.get()
                yield item
                if _ends(item):
                    return
        finally:
            if queue in live.queues:
                live.queues.remove(queue)

    async def cancel(self, execution_id: str) -> Execution:
        """Cancel a created, running or paused execution; returns it once it has settled (as
        CANCELLED, or in its final state if it finished first)."""
        live = self._live.get(execution_id)
        if live is None:
            execution = await self._existing(execution_id)
            live = self._live.get(execution_id)
        if live is not None:
            live.cancel_requested = True
            if live.run is not None:
                live.run.cancel()
            return await asyncio.shield(live.settled)
        if execution.state.is_final:
            raise InvalidState(
                f"execution {execution_id} is already {execution.state}",
                state=str(execution.state),
                execution_id=execution_id,
            )
        # Paused, or left behind by a crash and not recovered: nothing runs it, mark it here.
        live = self._track(execution, keep_history=True)
        live.cancel_requested = True
        try:
            live.restart_seq(await self._store.events(execution_id))
            return await self._settle_now(live, ExecutionState.CANCELLED)
        except BaseException:
            self._forget(live)
            raise

    async def recover(self) -> list[str]:
        """Replay every CREATED or RUNNING execution a previous process left behind (PAUSED ones
        simply stay resumable). Returns their ids; they run in the background."""
        found = await self._store.in_states(IN_PROGRESS)
        recovered = []
        for execution in found:
            if execution.execution_id in self._live:
                continue
            live = self._track(execution, keep_history=True)
            try:
                log_ = await self._store.events(execution.execution_id)
                live.restart_seq(log_)
                reloaded = await self._reload(execution)
                if isinstance(reloaded, ExecutionError):
                    await self._settle_now(live, ExecutionState.FAILED, error=reloaded)
                else:
                    loaded, value = reloaded
                    running = execution.state is ExecutionState.CREATED
                    self._spawn(live, loaded, value, log_, mark_running=running)
            except Exception:
                log.exception("could not recover execution %s", execution.execution_id)
                self._forget(live)
                continue
            recovered.append(execution.execution_id)
        return recovered

    async def close(self) -> None:
        """Stop the loop threads. Executions still running stay RUNNING in the store, for recover()
        on the next start; their waiters are cancelled."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        for live in list(self._live.values()):
            if not live.settled.done():
                live.settled.cancel()
        self._live.clear()
        await self._pool.close()
        # Threads still inside a blocking sync task cannot be interrupted: not waited for.
        self._task_threads.shutdown(wait=False, cancel_futures=True)

    # -- internals: main loop --------------------------------------------------------------

    def _main_loop_of_threads(self) -> asyncio.AbstractEventLoop:
        """The main loop, from a loop thread: it is set before any run reaches a thread."""
        assert self._loop is not None
        return self._loop

    def _main_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def _prepare(self, version: WorkflowVersion, body: Any) -> tuple[LoadedWorkflow, Any]:
        if self._closed:
            raise RuntimeError("the runtime is closed")
        self._main_loop()
        loaded = self._loader.cached(version) or await self._loader.load(version)
        return loaded, inputs.convert_input(loaded.input_type, body)

    def _new_execution(
        self, version: WorkflowVersion, body: Any, state: ExecutionState
    ) -> Execution:
        now = self._clock()
        return Execution(
            execution_id=self._new_id(),
            ref=version.info.ref,
            version=version.info.version,
            state=state,
            input=body,
            created_at=now,
            updated_at=now,
        )

    async def _existing(self, execution_id: str) -> Execution:
        return await stored_execution(self._store, execution_id)

    async def _reload(self, execution: Execution) -> tuple[LoadedWorkflow, Any] | ExecutionError:
        """The workflow and converted input of a stored execution, or why it cannot run."""
        ref, version = execution.ref, execution.version
        try:
            loaded = await self._loader.stored(ref, version)
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

    def _track(self, execution: Execution, *, keep_history: bool) -> _Live:
        live = _Live(self, execution, keep_history=keep_history)
        self._live[execution.execution_id] = live
        return live

    def _untrack(self, live: _Live) -> None:
        if self._live.get(live.execution_id) is live:
            del self._live[live.execution_id]

    def _forget(self, live: _Live) -> None:
        self._untrack(live)
        if not live.settled.done():
            live.settled.cancel()

    def _spawn(
        self,
        live: _Live,
        loaded: LoadedWorkflow,
        value: Any,
        log_: Sequence[ExecutionEvent],
        *,
        mark_running: bool,
    ) -> None:
        task = self._main_loop().create_task(self._execute(live, loaded, value, log_, mark_running))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(
        self,
        live: _Live,
        loaded: LoadedWorkflow,
        value: Any,
        log_: Sequence[ExecutionEvent],
        mark_running: bool,
    ) -> None:
        try:
            if mark_running:
                running = evolve(
                    live.execution, state=ExecutionState.RUNNING, updated_at=self._clock()
                )
                await self._store.save(running, [self._state_event(live, running)])
                live.execution = running
                live.show([running])
            if live.cancel_requested:
                raise asyncio.CancelledError
            execution = live.execution
            context = ExecutionContext(
                value,
                execution.execution_id,
                execution.ref.namespace,
                execution.ref.name,
                execution.version,
            )
            replayer = Replayer(live, loaded, context, log_, self._task_threads)
            if self._share_loop and self._guard.may_share_the_loop(loaded):
                outcome = await self._run_here(live, loaded, replayer)
            else:
                outcome = await self._run_on_a_thread(live, replayer)
        except asyncio.CancelledError:
            if self._closed or not live.cancel_requested:
                raise  # the runtime is closing: the store keeps it RUNNING for recover()
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                task.uncancel()  # the cancel was meant for the workflow, which has stopped
            outcome = Outcome(ExecutionState.CANCELLED)
        except Exception as exc:
            log.exception("execution %s could not be driven", live.execution_id)
            self._forget_with_error(live, exc)
            return
        try:
            await self._finish(live, outcome)
        except Exception as exc:
            log.exception("execution %s: the final state could not be saved", live.execution_id)
            self._forget_with_error(live, exc)

    async def _run_here(self, live: _Live, loaded: LoadedWorkflow, replayer: Replayer) -> Outcome:
        live.run = asyncio.current_task()
        try:
            return await self._guard.watch(loaded, replayer.run())
        finally:
            live.run = None  # from here on a cancel waits for the final state to be saved

    async def _run_on_a_thread(self, live: _Live, replayer: Replayer) -> Outcome:
        thread = live.thread = self._pool.pick()
        thread.active += 1
        try:
            live.run = thread.submit(replayer.run())
            return await asyncio.wrap_future(live.run)
        finally:
            live.run = None
            thread.active -= 1

    async def _finish(self, live: _Live, outcome: Outcome) -> None:
        now = self._clock()
        execution = evolve(
            live.execution,
            state=outcome.state,
            output=outcome.output,
            error=outcome.error,
            pause_name=outcome.pause_name,
            updated_at=now,
        )
        await self._store.save(execution, [*outcome.unsaved, self._state_event(live, execution)])
        live.execution = execution
        live.show([*outcome.unpublished, execution])
        self._settled(live, execution)

    async def _settle_now(
        self, live: _Live, state: ExecutionState, *, error: ExecutionError | None = None
    ) -> Execution:
        await self._finish(live, Outcome(state, error=error))
        return live.execution

    def _settled(self, live: _Live, execution: Execution) -> None:
        self._untrack(live)
        if live.history is not None:
            # Kept a little while: a stream that subscribes just after a quick run finishes
            # still gets every event.
            self._recent[live.execution_id] = live.history
            self._recent.move_to_end(live.execution_id)
            while len(self._recent) > _RECENT_HISTORIES:
                self._recent.popitem(last=False)
        else:
            self._recent.pop(live.execution_id, None)  # an older history would now be stale
        if not live.settled.done():
            live.settled.set_result(execution)

    def _forget_with_error(self, live: _Live, exc: BaseException) -> None:
        self._untrack(live)
        if not live.settled.done():
            live.settled.set_exception(exc)
            live.settled.exception()  # retrieved: waiters still get it, nobody gets a warning
        for queue in live.queues:
            queue.put_nowait(live.execution)  # ends the streams at the last stored state
        live.queues.clear()

    def _state_event(self, live: _Live, execution: Execution) -> ExecutionEvent:
        return ExecutionEvent(
            execution.execution_id,
            live.next_seq(),
            EventKind.STATE,
            "",
            str(execution.state),
            execution.updated_at,
        )

    async def _write(
        self, live: _Live, saved: list[ExecutionEvent], shown: list[ExecutionEvent]
    ) -> None:
        if saved:
            await self._store.append(saved)
        if shown:
            live.show(shown)

    # -- internals: called from loop threads ---------------------------------------------

    async def _from_thread(self, coro: Any) -> Any:
        """Run `coro` on the main loop and await it from a loop thread."""
        loop = self._main_loop_of_threads()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))


def _ends(item: Item) -> bool:
    return isinstance(item, Execution) and ExecutionState(item.state).ends_stream
