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
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from attrs import evolve

from core.deadlines import paused, resumed
from core.errors import FluxError
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
from core.stream import StateChange
from engine import inputs
from engine.deadlines import STUCK_WAIT, in_time
from engine.live import Item, Live, new_execution_id, stored_execution, stored_state
from engine.loop_guard import DEFAULT_LIMIT
from engine.placement import TASK_THREADS, Placement
from engine.registration import LoadedWorkflow, WorkflowLoader
from engine.replay import Outcome
from engine.runs import new_execution, reload
from engine.tracking import Tracking
from ports.executions import ExecutionLog, Progress

log = logging.getLogger("flux.engine")


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
        progress: Progress | None = None,
    ) -> None:
        self._store = executions
        self._loader = loader
        self._placement = Placement(
            loop_threads=loop_threads,
            task_threads=task_threads,
            blocking_limit=blocking_limit,
            share_loop=share_loop,
        )
        self._clock = clock
        self._new_id = new_id
        self.progress = progress
        self.stuck_wait = STUCK_WAIT  # see engine.deadlines.in_time
        self._loop: asyncio.AbstractEventLoop | None = None
        self._live: Tracking[Live] = Tracking()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- public API --------------------------------------------------------------------------

    async def start(
        self, version: WorkflowVersion, body: Any, launch: Launch = NO_LAUNCH
    ) -> Execution:
        """Validate the input, persist a CREATED execution and schedule it; returns at once."""
        loaded, value = await self._prepare(version, body)
        execution = new_execution(
            version, body, ExecutionState.CREATED, launch, new_id=self._new_id, clock=self._clock
        )
        await self._store.create(execution)
        live = self._track(execution, keep_history=True)
        live.show([execution])
        self._spawn(live, loaded, value, (), mark_running=True)
        return execution

    async def run(
        self,
        version: WorkflowVersion,
        body: Any,
        launch: Launch = NO_LAUNCH,
        started: Callable[[Execution], None] | None = None,
    ) -> Execution:
        """Start and wait until the execution completes, fails, is cancelled or pauses."""
        loaded, value = await self._prepare(version, body)
        # Stored as RUNNING straight away: a sync call has no observer of CREATED, and it saves
        # a write. A crash before the end still leaves it for recover().
        execution = new_execution(
            version, body, ExecutionState.RUNNING, launch, new_id=self._new_id, clock=self._clock
        )
        await self._store.create(execution)
        if started is not None:
            started(execution)
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
            reloaded = await reload(self._loader, execution)
            if isinstance(reloaded, ExecutionError):
                return await self._settle_now(live, ExecutionState.FAILED, error=reloaded)
            loaded, value = reloaded
            now = self._clock()
            answer = ExecutionEvent(
                execution_id, live.next_seq(), EventKind.RESUMED, key, body, now
            )
            running = evolve(
                resumed(execution, now),
                state=ExecutionState.RUNNING,
                output=None,
                pause_name=None,
                updated_at=now,
            )
            events = [answer, live.state_event(running)]
            if not await self._store.save_if(running, events, [ExecutionState.PAUSED]):
                raise not_resumable(execution_id, (await self._existing(execution_id)).state)
        except BaseException:
            self._forget(live)
            raise
        live.execution = running
        live.show([answer, running])
        self._spawn(live, loaded, value, [*log_, answer], mark_running=False)
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
        """Live progress: StateChanges (the execution and its state's log seq) for state changes,
        ExecutionEvents for task and pause events, ending after a state that ends the stream.
        What the execution did since it
        started (or was resumed) is replayed first, so subscribing late misses nothing.
        Leaving the iteration early never affects the execution."""
        async for item in self._live.watch(execution_id, self._stored_state):
            yield item

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
        if execution.state is ExecutionState.CANCELLED:
            return execution  # cancelled already: the same answer again
        if execution.state.is_final:
            raise already_finished(execution)
        # Paused, or left behind by a crash and not recovered: nothing runs it, mark it here.
        live = self._track(execution, keep_history=True)
        live.cancel_requested = True
        try:
            live.restart_seq(await self._store.events(execution_id))
            return await self._settle_now(live, ExecutionState.CANCELLED)
        except BaseException:
            self._forget(live)
            raise

    def abandon_waiters(self, error: Callable[[str], FluxError]) -> None:
        self._live.abandon_waiters(error)

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
                reloaded = await reload(self._loader, execution)
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
        self._live.cancel_waiters()
        await self._placement.close()

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

    async def _existing(self, execution_id: str) -> Execution:
        return await stored_execution(self._store, execution_id)

    async def _stored_state(self, execution_id: str) -> StateChange:
        return await stored_state(self._store, execution_id)

    def _track(self, execution: Execution, *, keep_history: bool) -> Live:
        live = Live(self, execution, keep_history=keep_history)
        self._live.add(live)
        return live

    def _untrack(self, live: Live) -> None:
        self._live.remove(live)

    def _forget(self, live: Live) -> None:
        self._untrack(live)
        if not live.settled.done():
            live.settled.cancel()

    def _spawn(
        self,
        live: Live,
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
        live: Live,
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
                await self._store.save(running, [live.state_event(running)])
                live.execution = running
                live.show([running])
            if live.cancel_requested:
                raise asyncio.CancelledError
            run = self._placement.run(live, loaded, value, log_)
            outcome = await in_time(run, live, self._clock, stuck_wait=self.stuck_wait)
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

    async def _finish(self, live: Live, outcome: Outcome) -> None:
        now = self._clock()
        execution = evolve(
            live.execution,
            state=outcome.state,
            output=outcome.output,
            error=outcome.error,
            pause_name=outcome.pause_name,
            updated_at=now,
        )
        if outcome.state is ExecutionState.PAUSED:
            execution = paused(execution, now, outcome.pause_timeout)
        events = [*outcome.unsaved, live.state_event(execution)]
        if not await self._store.save_if(execution, events, [live.execution.state]):
            # Someone else settled it first (a deadline sweep): what is stored is the answer.
            execution = await self._existing(live.execution_id)
        live.execution = execution
        live.show([*outcome.unpublished, execution])
        self._settled(live, execution)

    async def _settle_now(
        self, live: Live, state: ExecutionState, *, error: ExecutionError | None = None
    ) -> Execution:
        await self._finish(live, Outcome(state, error=error))
        return live.execution

    def _settled(self, live: Live, execution: Execution) -> None:
        self._live.settle(live, execution)

    def _forget_with_error(self, live: Live, exc: BaseException) -> None:
        self._untrack(live)
        if not live.settled.done():
            live.settled.set_exception(exc)
            live.settled.exception()  # retrieved: waiters still get it, nobody gets a warning
        for queue in live.queues:
            queue.put_nowait(live.as_item(live.execution))  # ends the streams at the last state
        live.queues.clear()

    async def _write(
        self, live: Live, saved: list[ExecutionEvent], shown: list[ExecutionEvent]
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
