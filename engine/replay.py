"""One attempt at running a workflow to its next stop, on a worker loop.

The replayer answers the SDK's durable calls: a task call whose key is in the log returns the
logged result without running; a new one runs (with retries and timeout) and its result is
persisted before the workflow goes on. A pause point answered by a RESUMED event returns the
resume body; otherwise the run suspends and the execution becomes PAUSED.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

from attrs import define, field

from core.model import EventKind, ExecutionError, ExecutionEvent, ExecutionState
from engine import inputs
from engine.registration import LoadedWorkflow, task_return_type
from flux._hooks import current_replayer
from flux.context import ExecutionContext
from flux.task import Task
from ports.replay import Channel

SLEEP = "sleep"

log = logging.getLogger("flux.engine")


class Suspend(BaseException):
    """Raised by an unanswered pause point. A BaseException so that user code catching
    `Exception` around a pause cannot swallow it."""

    def __init__(self, name: str, key: str, output: Any, timeout: float | None = None) -> None:
        super().__init__(name)
        self.name = name
        self.key = key
        self.output = output
        self.timeout = timeout


@define
class Outcome:
    """Where a run stopped, with the events not yet saved / not yet shown to watchers."""

    state: ExecutionState
    output: Any = None
    error: ExecutionError | None = None
    pause_name: str | None = None
    pause_timeout: float | None = None  # seconds a PAUSED outcome may wait; None: forever
    unsaved: list[ExecutionEvent] = field(factory=list)
    unpublished: list[ExecutionEvent] = field(factory=list)


class Replayer:
    def __init__(
        self,
        channel: Channel,
        loaded: LoadedWorkflow,
        context: ExecutionContext[Any],
        log: Sequence[ExecutionEvent],
        task_threads: Executor | None = None,
    ) -> None:
        self.channel = channel
        self.loaded = loaded
        self.context = context
        self.task_threads = task_threads  # where sync tasks run; None: the loop's default
        self.completed: dict[str, Any] = {}
        self.resumed: dict[str, Any] = {}
        self.sleeps: dict[str, Any] = {}
        for event in log:
            if event.kind is EventKind.TASK_COMPLETED:
                self.completed[event.key] = event.value
            elif event.kind is EventKind.RESUMED:
                self.resumed[event.key] = event.value
            elif event.kind is EventKind.TASK_STARTED:
                self.sleeps[event.key] = event.value
        self.calls: dict[str, int] = {}
        self.pauses: dict[str, int] = {}
        self.unsaved: list[ExecutionEvent] = []
        self.unpublished: list[ExecutionEvent] = []

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> Outcome:
        token = current_replayer.set(self)
        try:
            result = self.loaded.function(self.context)
            if inspect.isawaitable(result):
                result = await result
            output = inputs.to_json(result)
        except Suspend as suspend:
            self._emit(EventKind.PAUSED, suspend.key, suspend.output, persist=True)
            return self._outcome(
                ExecutionState.PAUSED,
                output=suspend.output,
                pause_name=suspend.name,
                pause_timeout=suspend.timeout,
            )
        except asyncio.CancelledError:
            raise  # a cancel of the run, not a failure of the workflow
        except BaseException as exc:
            # KeyboardInterrupt, SystemExit, GeneratorExit or any other BaseException raised by
            # workflow code ends this run, never the process that runs it.
            context = self.context
            log.error(
                "execution %s of %s/%s failed: %s",
                context.execution_id,
                context.namespace,
                context.workflow,
                type(exc).__name__,
                exc_info=exc,
            )
            return self._outcome(ExecutionState.FAILED, error=error_of(exc))
        finally:
            current_replayer.reset(token)
        return self._outcome(ExecutionState.COMPLETED, output=output)

    def _outcome(self, state: ExecutionState, **values: Any) -> Outcome:
        return Outcome(state, unsaved=self.unsaved, unpublished=self.unpublished, **values)

    # -- flux._hooks.Replayer --------------------------------------------------------------

    def task_key(self, task: Task) -> str:
        return self._key(self.calls, task.name)

    async def call_task(self, task: Task, key: str, args: tuple, kwargs: dict) -> Any:
        if key in self.completed:
            return inputs.restore(task_return_type(task), self.completed[key])
        self._emit(EventKind.TASK_STARTED, key, None, persist=False)
        try:
            result = await self._attempts(task, args, kwargs)
            value = inputs.to_json(result)
        except Exception as exc:
            error = error_of(exc)
            self._emit(EventKind.TASK_FAILED, key, error.as_json(), persist=True)
            raise
        self._emit(EventKind.TASK_COMPLETED, key, value, persist=True)
        await self._flush()
        return result

    async def pause(self, name: str, output: Any, timeout: float | None = None) -> Any:
        key = self._key(self.pauses, name)
        if key in self.resumed:
            return self.resumed[key]
        raise Suspend(name, key, inputs.to_json(output), timeout)

    async def sleep(self, seconds: float) -> None:
        key = self._key(self.calls, SLEEP)
        started = self.sleeps.get(key)
        if isinstance(started, dict) and isinstance(started.get("until"), int | float):
            until = float(started["until"])
        else:
            until = self.channel.clock() + seconds
            self._emit(
                EventKind.TASK_STARTED, key, {"until": until, "seconds": seconds}, persist=True
            )
            await self._flush()
        remaining = until - self.channel.clock()
        if remaining > 0:
            await asyncio.sleep(remaining)

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _key(counters: dict[str, int], name: str) -> str:
        n = counters.get(name, 0)
        counters[name] = n + 1
        return f"{name}#{n}"

    async def _attempts(self, task: Task, args: tuple, kwargs: dict) -> Any:
        options = task.options
        attempt = 0
        while True:
            try:
                return await self._attempt(task, args, kwargs)
            except Exception:
                if attempt >= options.retry_max_attempts:
                    if options.fallback is None:
                        raise
                    result = options.fallback(*args, **kwargs)
                    return await result if inspect.isawaitable(result) else result
                delay = options.retry_delay * options.retry_backoff**attempt
                if delay > 0:
                    await asyncio.sleep(delay)
                attempt += 1

    async def _attempt(self, task: Task, args: tuple, kwargs: dict) -> Any:
        if task.is_async:
            call = task.function(*args, **kwargs)
        else:
            # A sync task gets a thread of its own: it can block, and its timeout still fires.
            run = functools.partial(contextvars.copy_context().run, task.function, *args, **kwargs)
            call = asyncio.get_running_loop().run_in_executor(self.task_threads, run)
        timeout = task.options.timeout
        if timeout is None:
            result = await call
        else:
            try:
                result = await asyncio.wait_for(call, timeout)
            except TimeoutError:
                raise TimeoutError(f"task {task.name} timed out after {timeout:g}s") from None
        if inspect.isawaitable(result):  # a sync function handing back a coroutine
            result = await result
        return result

    def _emit(self, kind: EventKind, key: str, value: Any, *, persist: bool) -> None:
        channel = self.channel
        event = ExecutionEvent(
            channel.execution_id, channel.next_seq(), kind, key, value, channel.clock()
        )
        if persist:
            self.unsaved.append(event)
        self.unpublished.append(event)
        if not persist and channel.watched():
            # Someone streams this run: show progress now rather than with the next write.
            pending, self.unpublished = self.unpublished, []
            channel.publish(pending)

    async def _flush(self) -> None:
        saved, self.unsaved = self.unsaved, []
        shown, self.unpublished = self.unpublished, []
        await self.channel.write(saved, shown)


def error_of(exc: BaseException) -> ExecutionError:
    return ExecutionError(type=type(exc).__name__, message=str(exc))
