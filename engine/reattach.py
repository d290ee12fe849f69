"""Reattaching to an execution's stream: what its durable log holds past a given seq, then what
it does live, with nothing lost or shown twice in between.

The live watch is subscribed to before the log is read, so whatever happens while the log is
replayed is already waiting in the subscription; a live item the replay covered (seq at or
below the last one replayed) is dropped. Should the subscription have come too late for a few
logged events (the executor only started tracking the execution after the first look), a live
item whose seq jumps past the last one sent makes the log be read again for what lies between.
Works the same over every executor: each shows state changes with their log seq.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

from core.stream import StreamItem, caught_up, ends, replayed
from engine.live import stored_execution
from ports.executions import ExecutionLog
from ports.executor import Executor


async def events_after(
    executor: Executor, log: ExecutionLog, execution_id: str, after: int
) -> AsyncGenerator[StreamItem, None]:
    """The stream items of `execution_id` with a seq above `after`: the logged ones first, then
    live ones until a state that ends the stream (at once if the log already holds it)."""
    live: asyncio.Queue[StreamItem | None] = asyncio.Queue()
    pump = asyncio.ensure_future(_pump(executor.watch(execution_id), live))
    try:
        await asyncio.sleep(0)  # the pump's first step subscribes it
        events = await log.events(execution_id)
        execution = await stored_execution(log, execution_id)  # read after: as new as the log
        replay = replayed(execution, events, after)
        for item in replay:
            yield item
        if caught_up(execution, events):
            return
        followed = _followed(live, log, execution_id, replay[-1].seq if replay else after)
        async for item in followed:
            yield item
    finally:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)


async def _followed(
    live: asyncio.Queue[StreamItem | None], log: ExecutionLog, execution_id: str, replayed: int
) -> AsyncGenerator[StreamItem, None]:
    """The live items past seq `replayed`, each once, with what the log holds in a gap before
    one; until a state that ends the stream, or the watch's end (then the log closes it)."""
    last, sent = replayed, set[int]()
    while (shown := await live.get()) is not None:
        if shown.seq <= replayed or shown.seq in sent:
            continue
        gap = (
            await _logged_between(log, execution_id, last, shown.seq)
            if shown.seq > last + 1
            else []
        )
        for item in [*gap, shown]:
            if item.seq not in sent:
                sent.add(item.seq)
                yield item
        last = max(last, shown.seq)
        if ends(shown):
            return
    # The live watch ended short of a state that ends the stream (it only saw the stored
    # execution): what the log holds by now closes the stream.
    for item in await _logged_between(log, execution_id, last, None):
        if item.seq not in sent:
            yield item


async def _pump(items: AsyncIterator[StreamItem], into: asyncio.Queue[StreamItem | None]) -> None:
    try:
        # A cancel reaches the watch where it waits, and unsubscribes it on its way out.
        async for item in items:
            into.put_nowait(item)
    finally:
        into.put_nowait(None)  # the end mark: the live watch is over


async def _logged_between(
    log: ExecutionLog, execution_id: str, after: int, before: int | None
) -> list[StreamItem]:
    """The logged stream items with a seq above `after` and below `before` (None: no bound)."""
    events = await log.events(execution_id)
    execution = await stored_execution(log, execution_id)
    return [
        item for item in replayed(execution, events, after) if before is None or item.seq < before
    ]
