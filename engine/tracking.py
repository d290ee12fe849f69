"""The executions an executor is driving or handing out, as its waiters and watchers see them.

Shared by the in-process runtime and the worker pool: one `Watched` per execution in progress,
and for a little while after it settles, what it showed (a stream that subscribes just after a
quick run finishes still gets every event).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

from core.errors import FluxError
from core.model import Execution
from core.stream import StateChange
from engine.live import Item, Watched

W = TypeVar("W", bound=Watched)

RECENT_HISTORIES = 512


class Tracking(Generic[W]):
    def __init__(self) -> None:
        self._live: dict[str, W] = {}
        self._recent: OrderedDict[str, list[Item]] = OrderedDict()

    def __contains__(self, execution_id: str) -> bool:
        return execution_id in self._live

    def get(self, execution_id: str) -> W | None:
        return self._live.get(execution_id)

    def all(self) -> list[W]:
        return list(self._live.values())

    def add(self, watched: W) -> W:
        self._live[watched.execution_id] = watched
        return watched

    def remove(self, watched: W) -> None:
        if self._live.get(watched.execution_id) is watched:
            del self._live[watched.execution_id]

    def settle(self, watched: W, execution: Execution) -> None:
        """`watched` has settled as `execution`: wake its waiters, keep its history a while."""
        self.remove(watched)
        if watched.history is not None:
            self._recent[watched.execution_id] = watched.history
            self._recent.move_to_end(watched.execution_id)
            while len(self._recent) > RECENT_HISTORIES:
                self._recent.popitem(last=False)
        else:
            self._recent.pop(watched.execution_id, None)  # an older history would be stale
        watched.settle(execution)

    def abandon_waiters(self, error: Callable[[str], FluxError]) -> None:
        for watched in self._live.values():
            if not watched.settled.done():
                watched.settled.set_exception(error(watched.execution_id))
                watched.settled.exception()  # retrieved: a run nobody waits for must not warn

    def cancel_waiters(self) -> None:
        for watched in self._live.values():
            if not watched.settled.done():
                watched.settled.cancel()
        self._live.clear()

    async def watch(
        self, execution_id: str, stored: Callable[[str], Awaitable[StateChange]]
    ) -> AsyncIterator[Item]:
        """What `execution_id` shows: its live progress, its recent history, or (for one this
        executor does not drive) its stored state alone."""
        watched = self._live.get(execution_id)
        if watched is None:
            recent = self._recent.get(execution_id)
            if recent is not None:
                for item in recent:
                    yield item
                return
            state = await stored(execution_id)
            watched = self._live.get(execution_id)
            if watched is None:
                yield state
                return
        async for item in watched.follow():
            yield item
