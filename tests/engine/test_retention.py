"""The retention use case (engine/retention.py) over the memory twin: the admin check, the
cutoffs it computes from its settings, batch after batch until none is left, and the
background task's start and stop."""

from __future__ import annotations

import asyncio
import math

import pytest

from adapters.storage.memory import MemoryStorage
from core.errors import Forbidden, InvalidRequest
from core.model import Execution, ExecutionState, WorkflowRef
from core.permissions import EVERYONE, Principal
from engine.retention import DAY, RetentionPurge

NOW = 1_000 * DAY
RUNNER = Principal("runner", frozenset({"workflow:*"}), via="api_key")


class Keys:
    """Stands in for the idempotency keys' port: records the cutoffs it is asked to purge."""

    def __init__(self) -> None:
        self.cutoffs: list[float] = []

    async def purge(self, older_than: float) -> int:
        self.cutoffs.append(older_than)
        return 2


async def stored(storage: MemoryStorage, count: int, state: ExecutionState, age: float) -> None:
    for i in range(count):
        await storage.executions.create(
            Execution(
                f"{state}-{age}-{i}",
                WorkflowRef("a", "b"),
                1,
                state,
                created_at=NOW - age,
                updated_at=NOW - age,
            )
        )


def purge_of(storage: MemoryStorage, keys: Keys | None = None, **options) -> RetentionPurge:
    settings = {"retention_days": 30, "idempotency_window": 3_600.0, "batch": 3, "pause": 0.0}
    return RetentionPurge(storage.retention, keys, clock=lambda: NOW, **{**settings, **options})


async def left(storage: MemoryStorage) -> int:
    return len(await storage.executions.in_states(list(ExecutionState)))


async def test_by_hand_it_goes_batch_after_batch_and_keeps_the_unfinished():
    storage, keys = MemoryStorage(), Keys()
    await stored(storage, 10, ExecutionState.COMPLETED, 2 * DAY)
    await stored(storage, 2, ExecutionState.PAUSED, 2 * DAY)
    await stored(storage, 1, ExecutionState.FAILED, 10.0)

    purged = await purge_of(storage, keys).purge(EVERYONE, DAY)

    assert (purged.executions, purged.idempotency_keys, purged.complete) == (10, 2, True)
    assert await left(storage) == 3
    assert keys.cutoffs == [NOW - 3_600.0]
    assert (await purge_of(storage).purge(EVERYONE, 0)).executions == 1


async def test_by_hand_it_needs_admin_and_a_sane_age():
    purge = purge_of(MemoryStorage())
    with pytest.raises(Forbidden):
        await purge.purge(RUNNER, 0)
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(InvalidRequest):
            await purge.purge(EVERYONE, bad)


async def test_a_background_run_purges_past_retention_days_only():
    storage = MemoryStorage()
    await stored(storage, 4, ExecutionState.CANCELLED, 31 * DAY)
    await stored(storage, 4, ExecutionState.CANCELLED, 29 * DAY)
    purged = await purge_of(storage).run_once()
    assert (purged.executions, purged.complete) == (4, True)
    assert await left(storage) == 4


async def test_retention_days_0_keeps_every_execution_but_still_drops_expired_keys():
    storage, keys = MemoryStorage(), Keys()
    await stored(storage, 4, ExecutionState.COMPLETED, 3_000 * DAY)
    purged = await purge_of(storage, keys, retention_days=0).run_once()
    assert (purged.executions, purged.idempotency_keys) == (0, 2)
    assert await left(storage) == 4


async def test_the_background_task_runs_after_its_first_delay_and_stops_on_close():
    storage, keys = MemoryStorage(), Keys()
    await stored(storage, 7, ExecutionState.COMPLETED, 40 * DAY)
    purge = purge_of(storage, keys, first_delay=0.05, interval=0.05)
    purge.start()
    try:
        async with asyncio.timeout(5):
            while await left(storage):
                await asyncio.sleep(0.01)
            while len(keys.cutoffs) < 2:  # it runs again after `interval`
                await asyncio.sleep(0.01)
    finally:
        await purge.close()
    runs = len(keys.cutoffs)
    await asyncio.sleep(0.2)
    assert len(keys.cutoffs) == runs  # stopped: no run after close
    await purge.close()  # closing twice is fine
