"""Which workflow runs may share the server's event loop, and spotting the ones that must not.

An `async def` workflow runs on the server loop, as any asyncio code does: a trivial run then
costs no thread hand-off at all (see docs/engine.md for the figures). A plain `def` workflow
would hold the loop for its whole length, so it always runs on a worker thread. An async
workflow may still block (`time.sleep`, a sync client, a CPU loop): every step of an inline run
is timed, and a workflow version caught holding the loop longer than `limit` is sent to the
worker threads from its next run on. The step that was caught cannot be moved; it is logged.
"""

from __future__ import annotations

import inspect
import logging
import time
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar

from core.model import WorkflowRef
from engine.registration import LoadedWorkflow

T = TypeVar("T")

log = logging.getLogger("flux.engine")

DEFAULT_LIMIT = 0.05  # seconds one step of a workflow may hold the server loop


class LoopGuard:
    def __init__(self, limit: float = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._blocking: set[tuple[WorkflowRef, str]] = set()  # (ref, source hash) caught

    def may_share_the_loop(self, loaded: LoadedWorkflow) -> bool:
        return inspect.iscoroutinefunction(loaded.function) and _key(loaded) not in self._blocking

    def watch(self, loaded: LoadedWorkflow, run: Coroutine[Any, Any, T]) -> Coroutine[Any, Any, T]:
        """`run`, driven step by step; a step over the limit marks the workflow as blocking."""

        def caught(held: float) -> None:
            if _key(loaded) in self._blocking:
                return
            self._blocking.add(_key(loaded))
            log.warning(
                "workflow %s held the event loop for %.3f s in one step; its runs go to "
                "worker threads from now on (a sync task or `def` workflow avoids this)",
                loaded.ref,
                held,
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
