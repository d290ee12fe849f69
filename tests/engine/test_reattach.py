"""engine/reattach.py: a reattached stream is the log after a seq, then the live watch, with
nothing lost or shown twice, whatever order the live watch and the log are in. A scripted
executor stands in for the live watch; the log is a real memory store."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from adapters.storage.memory import MemoryStorage
from core.model import EventKind, Execution, ExecutionEvent, ExecutionState, WorkflowRef
from core.stream import StateChange, StreamItem
from engine.reattach import events_after

ID = "e1"
REF = WorkflowRef("ns", "wf")


def _event(seq: int, kind: EventKind, value: object = None, key: str = "") -> ExecutionEvent:
    return ExecutionEvent(ID, seq, kind, key, value, float(seq))


def _state(seq: int, state: ExecutionState) -> ExecutionEvent:
    return _event(seq, EventKind.STATE, str(state))


def _execution(state: ExecutionState, output: object = None) -> Execution:
    return Execution(ID, REF, 1, state, output=output)


class ScriptedWatch:
    """An executor whose live watch yields what the test feeds it, until fed None."""

    def __init__(self) -> None:
        self.feed: asyncio.Queue[StreamItem | None] = asyncio.Queue()
        self.subscribed = asyncio.Event()
        self.closed = False

    async def watch(self, execution_id: str) -> AsyncIterator[StreamItem]:
        self.subscribed.set()
        try:
            while (item := await self.feed.get()) is not None:
                yield item
        finally:
            self.closed = True


@pytest.fixture
async def store() -> AsyncIterator[MemoryStorage]:
    storage = MemoryStorage()
    await storage.executions.create(_execution(ExecutionState.RUNNING))
    await storage.executions.append(
        [_state(1, ExecutionState.RUNNING), _event(3, EventKind.TASK_COMPLETED, 0, "t#0")]
    )
    try:
        yield storage
    finally:
        await storage.close()


async def _finish(store: MemoryStorage, *events: ExecutionEvent) -> Execution:
    done = _execution(ExecutionState.COMPLETED, {"ok": True})
    await store.executions.save(done, events)
    return done


async def _take(items: AsyncIterator[StreamItem], n: int) -> list[StreamItem]:
    taken = []
    for _ in range(n):
        taken.append(await asyncio.wait_for(anext(items), 5))
    return taken


async def test_a_gap_in_the_live_watch_is_filled_from_the_log(store):
    live = ScriptedWatch()
    items = events_after(live, store.executions, ID, 0)  # type: ignore[arg-type]
    async with contextlib.aclosing(items):
        replay = await _take(items, 2)
        assert [item.seq for item in replay] == [1, 3]
        # Written while the stream was replaying, shown live only from the final state on.
        done = await _finish(
            store,
            _event(5, EventKind.TASK_COMPLETED, 1, "t#1"),
            _state(6, ExecutionState.COMPLETED),
        )
        await live.feed.put(StateChange(done, 6))
        rest = [item async for item in items]
    assert [item.seq for item in rest] == [5, 6]
    assert rest[-1] == StateChange(done, 6)
    assert live.closed


async def test_live_items_the_replay_covered_are_dropped_and_out_of_order_ones_kept(store):
    live = ScriptedWatch()
    # The watch shows what it saw since the start: the replay has it already.
    live.feed.put_nowait(StateChange(_execution(ExecutionState.RUNNING), 1))
    live.feed.put_nowait(_event(3, EventKind.TASK_COMPLETED, 0, "t#0"))
    items = events_after(live, store.executions, ID, 0)  # type: ignore[arg-type]
    async with contextlib.aclosing(items):
        assert [item.seq for item in await _take(items, 2)] == [1, 3]
        started = _event(4, EventKind.TASK_STARTED, None, "t#1")
        await live.feed.put(started)
        assert await _take(items, 1) == [started]
        # Two tasks finishing at once: the later one shown first, its neighbour after.
        late = _event(6, EventKind.TASK_COMPLETED, 2, "t#2")
        early = _event(5, EventKind.TASK_COMPLETED, 1, "t#1")
        await store.executions.append([early, late])
        await live.feed.put(late)
        await live.feed.put(early)  # read from the log with the gap: not shown twice
        done = await _finish(store, _state(7, ExecutionState.COMPLETED))
        await live.feed.put(StateChange(done, 7))
        rest = [item async for item in items]
    assert [item.seq for item in rest] == [5, 6, 7]


async def test_after_a_seq_only_later_events_come(store):
    live = ScriptedWatch()
    items = events_after(live, store.executions, ID, 1)  # type: ignore[arg-type]
    async with contextlib.aclosing(items):
        assert [item.seq for item in await _take(items, 1)] == [3]
        await live.feed.put(_event(3, EventKind.TASK_COMPLETED, 0, "t#0"))  # seen: dropped
        done = await _finish(store, _state(4, ExecutionState.COMPLETED))
        await live.feed.put(StateChange(done, 4))
        assert [item.seq for item in [item async for item in items]] == [4]


async def test_a_settled_execution_ends_with_the_log_and_never_waits_on_the_watch(store):
    await _finish(store, _state(4, ExecutionState.COMPLETED))
    live = ScriptedWatch()  # never fed: a stream that waited on it would hang
    items = events_after(live, store.executions, ID, 0)  # type: ignore[arg-type]
    seen = await asyncio.wait_for(_all(items), 5)
    assert [item.seq for item in seen] == [1, 3, 4]
    assert isinstance(seen[-1], StateChange) and seen[-1].execution.output == {"ok": True}
    after_all = events_after(live, store.executions, ID, 4)  # type: ignore[arg-type]
    nothing = await asyncio.wait_for(_all(after_all), 5)
    assert nothing == []


async def test_an_earlier_pause_does_not_end_a_replay(store):
    await store.executions.append(
        [
            _event(4, EventKind.PAUSED, {"asked": 1}, "p#0"),
            _state(5, ExecutionState.PAUSED),
            _event(6, EventKind.RESUMED, "yes", "p#0"),
            _state(7, ExecutionState.RUNNING),
        ]
    )
    await _finish(store, _state(8, ExecutionState.COMPLETED))
    items = events_after(ScriptedWatch(), store.executions, ID, 0)  # type: ignore[arg-type]
    seen = await asyncio.wait_for(_all(items), 5)
    states = [(i.seq, str(i.execution.state)) for i in seen if isinstance(i, StateChange)]
    assert states == [(1, "RUNNING"), (5, "PAUSED"), (7, "RUNNING"), (8, "COMPLETED")]
    paused = next(i for i in seen if isinstance(i, StateChange) and i.seq == 5)
    assert paused.execution.output == {"asked": 1}


async def test_a_live_watch_that_ends_short_is_closed_from_the_log(store):
    live = ScriptedWatch()
    items = events_after(live, store.executions, ID, 0)  # type: ignore[arg-type]
    async with contextlib.aclosing(items):
        assert [item.seq for item in await _take(items, 2)] == [1, 3]
        await _finish(store, _state(4, ExecutionState.COMPLETED))
        await live.feed.put(None)  # the watch only saw the stored execution, and stopped
        rest = [item async for item in items]
    assert [item.seq for item in rest] == [4]


async def test_leaving_early_unsubscribes_the_watch(store):
    live = ScriptedWatch()
    items = events_after(live, store.executions, ID, 0)  # type: ignore[arg-type]
    await _take(items, 1)
    assert live.subscribed.is_set()
    await items.aclose()
    assert live.closed


async def _all(items: AsyncIterator[StreamItem]) -> list[StreamItem]:
    return [item async for item in items]
