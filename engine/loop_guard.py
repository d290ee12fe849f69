"""Which workflow runs may share the server's event loop, and spotting the ones that must not.

An `async def` workflow runs on the server loop, as any asyncio code does: a trivial run then
costs no thread hand-off at all (see docs/engine.md for the figures). A plain `def` workflow
would hold the loop for its whole length, so it always runs on a worker thread. An async
workflow may still block (`time.sleep`, a sync client, a CPU loop): every step of an inline run
is timed, and a workflow version caught holding the loop longer than `limit` for `strikes`
steps is sent to the worker threads from its next run on. Steps already taken cannot be moved;
each is logged. Several strikes, not one, because a step is timed by the wall clock: on a busy
machine the OS may pause the whole process for a moment, and that is not the workflow's doing.
"""

from __future__ import annotations

import inspect
import logging
import time
import types
from collections import Counter
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar

from core.model import WorkflowRef
from engine.registration import LoadedWorkflow

T = TypeVar("T")

log = logging.getLogger("flux.engine")

DEFAULT_LIMIT = 0.1  # seconds one step of a workflow may hold the server loop
DEFAULT_STRIKES = 3


class LoopGuard:
    def __init__(self, limit: float = DEFAULT_LIMIT, strikes: int = DEFAULT_STRIKES) -> None:
        self.limit = limit
        self.strikes = strikes
        self._caught: Counter[tuple[WorkflowRef, str]] = Counter()  # by (ref, source hash)

    def may_share_the_loop(self, loaded: LoadedWorkflow) -> bool:
        return (
            inspect.iscoroutinefunction(loaded.function)
            and self._caught[_key(loaded)] < self.strikes
        )

    def watch(self, loaded: LoadedWorkflow, run: Coroutine[Any, Any, T]) -> Coroutine[Any, Any, T]:
        """`run`, driven step by step; a step over the limit is a strike against the workflow."""

        def caught(held: float) -> None:
            key = _key(loaded)
            self._caught[key] += 1
            moved = self._caught[key] == self.strikes
            log.warning(
                "workflow %s held the event loop for %.3f s in one step%s (a sync task or a "
                "`def` workflow runs on a thread and avoids this)",
                loaded.ref,
                held,
                "; its runs go to worker threads from now on" if moved else "",
            )

        return _timed(run, self.limit, caught)


def _key(loaded: LoadedWorkflow) -> tuple[WorkflowRef, str]:
    return loaded.ref, loaded.source_hash


async def _timed(coro: Coroutine[Any, Any, T], limit: float, caught: Callable[[float], None]) -> T:
    return await _steps(coro, limit, caught)


@types.coroutine
def _steps(
    coro: Coroutine[Any, Any, T], limit: float, caught: Callable[[float], None]
) -> Generator[Any, Any, T]:
    """Drive `coro` exactly as `await coro` would, timing each step between two suspensions."""
    value: Any = None
    error: BaseException | None = None
    while True:
        started = time.perf_counter()
        try:
            yielded = coro.send(value) if error is None else coro.throw(error)
        except StopIteration as stop:
            return stop.value
        finally:
            held = time.perf_counter() - started
            if held > limit:
                caught(held)
        try:
            value, error = (yield yielded), None
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # a cancellation or a throw meant for the workflow
            value, error = None, exc
