"""The retention contract (ports/retention.py), run against every adapter through `storage`:
only finished executions older than the cutoff go, with their events (and their callback
deliveries), and none an idempotency key still names; the batch bound holds; the count is
right; two purges at once (two replicas on PostgreSQL) delete each execution once."""

from __future__ import annotations

import asyncio

from attrs import evolve

from core.model import EventKind, Execution, ExecutionEvent, ExecutionState, WorkflowRef
from tests.contract.pg import replicas

OLD, CUTOFF, NEW = 100.0, 500.0, 1000.0
FINAL = (ExecutionState.COMPLETED, ExecutionState.FAILED, ExecutionState.CANCELLED)
KEPT_STATES = (ExecutionState.CREATED, ExecutionState.RUNNING, ExecutionState.PAUSED)


def execution(execution_id: str, state: ExecutionState, updated_at: float) -> Execution:
    return Execution(
        execution_id=execution_id,
        ref=WorkflowRef("billing", "invoice"),
        version=1,
        state=state,
        input={"n": 1},
        created_at=1.0,
        updated_at=updated_at,
    )


def events_of(execution_id: str, count: int = 3) -> list[ExecutionEvent]:
    return [
        ExecutionEvent(execution_id, seq, EventKind.TASK_COMPLETED, f"t#{seq}", {"v": seq}, 1.0)
        for seq in range(count)
    ]


async def store(storage, execution_id: str, state: ExecutionState, updated_at: float) -> None:
    await storage.executions.save(
        execution(execution_id, state, updated_at), events_of(execution_id)
    )


async def gone(storage, execution_id: str) -> bool:
    return (
        await storage.executions.get(execution_id) is None
        and await storage.executions.events(execution_id) == []
    )


async def test_only_finished_executions_older_than_the_cutoff_go_with_their_events(storage):
    for state in (*FINAL, *KEPT_STATES):
        await store(storage, f"old-{state}", state, OLD)
        await store(storage, f"new-{state}", state, NEW)

    assert await storage.retention.purge_finished(CUTOFF, 100) == 3

    for state in FINAL:
        assert await gone(storage, f"old-{state}")
    kept = [f"old-{state}" for state in KEPT_STATES] + [
        f"new-{state}" for state in (*FINAL, *KEPT_STATES)
    ]
    for execution_id in kept:
        assert (await storage.executions.get(execution_id)) is not None, execution_id
        assert len(await storage.executions.events(execution_id)) == 3, execution_id
    assert await storage.retention.purge_finished(CUTOFF, 100) == 0


async def test_old_paused_and_running_executions_are_never_purged(storage):
    for state in KEPT_STATES:
        await store(storage, f"ancient-{state}", state, 0.0)
    assert await storage.retention.purge_finished(NEW * 10, 100) == 0
    for state in KEPT_STATES:
        assert (await storage.executions.get(f"ancient-{state}")).state is state


async def test_an_execution_an_idempotency_key_names_is_kept_until_the_key_goes(storage):
    await store(storage, "keyed", ExecutionState.COMPLETED, OLD)
    await store(storage, "plain", ExecutionState.COMPLETED, OLD)
    await storage.idempotency.claim("alice", "k-1", "fp", "keyed", now=OLD, window=10.0)

    assert await storage.retention.purge_finished(CUTOFF, 10) == 1
    assert await gone(storage, "plain")
    assert (await storage.executions.get("keyed")) is not None

    assert await storage.idempotency.purge(OLD + 1) == 1  # the key expired, and went
    assert await storage.retention.purge_finished(CUTOFF, 10) == 1
    assert await gone(storage, "keyed")


async def test_the_cutoff_is_strict(storage):
    await store(storage, "at-cutoff", ExecutionState.COMPLETED, CUTOFF)
    assert await storage.retention.purge_finished(CUTOFF, 10) == 0
    assert await storage.retention.purge_finished(CUTOFF + 0.001, 10) == 1


async def test_the_batch_bound_holds_and_the_oldest_go_first(storage):
    for i in range(7):
        await store(storage, f"c{i}", ExecutionState.COMPLETED, OLD + i)

    assert await storage.retention.purge_finished(CUTOFF, 3) == 3
    assert [await gone(storage, f"c{i}") for i in range(7)] == [True] * 3 + [False] * 4
    assert await storage.retention.purge_finished(CUTOFF, 3) == 3
    assert await storage.retention.purge_finished(CUTOFF, 3) == 1
    assert await storage.retention.purge_finished(CUTOFF, 3) == 0
    assert await storage.retention.purge_finished(CUTOFF, 0) == 0


async def test_a_batch_larger_than_an_adapter_chunk_is_counted_whole(storage):
    # 1100 crosses both the SQLite (100) and the PostgreSQL (500) chunk sizes.
    for i in range(1100):
        await storage.executions.create(execution(f"x{i:04}", ExecutionState.COMPLETED, OLD))
    assert await storage.retention.purge_finished(CUTOFF, 1050) == 1050
    assert await storage.retention.purge_finished(CUTOFF, 1050) == 50
    assert await gone(storage, "x0000") and await gone(storage, "x1099")


async def test_purges_at_once_delete_each_execution_once(storage):
    for i in range(300):
        await storage.executions.create(execution(f"p{i:03}", ExecutionState.FAILED, OLD))
    counts = await asyncio.gather(
        *(storage.retention.purge_finished(CUTOFF, 1000) for _ in range(4))
    )
    assert sum(counts) == 300
    assert await storage.retention.purge_finished(CUTOFF, 1000) == 0


async def test_two_postgres_replicas_purging_at_once_share_the_work():
    async with replicas(2) as (first, second):
        for i in range(1200):
            await first.executions.create(execution(f"r{i:04}", ExecutionState.COMPLETED, OLD))
        await store(first, "paused", ExecutionState.PAUSED, OLD)
        counts = await asyncio.gather(
            *(replica.retention.purge_finished(CUTOFF, 400) for replica in (first, second) * 3)
        )
        left = await first.retention.purge_finished(CUTOFF, 10_000)
        assert sum(counts) + left == 1200
        assert (await second.executions.get("paused")) is not None


# -- callback deliveries: written by the save that finishes (or pauses) an execution -------------


async def test_callback_deliveries_go_with_their_execution(storage):
    for execution_id in ("done", "waiting"):
        running = evolve(
            execution(execution_id, ExecutionState.RUNNING, OLD),
            callback_url="https://hooks.example/x",
        )
        await storage.executions.create(running)
    await storage.executions.save(
        evolve(await storage.executions.get("done"), state=ExecutionState.COMPLETED)
    )
    await storage.executions.save(
        evolve(await storage.executions.get("waiting"), state=ExecutionState.PAUSED)
    )
    assert len(await storage.outbox.deliveries("done")) == 1
    assert len(await storage.outbox.deliveries("waiting")) == 1

    assert await storage.retention.purge_finished(CUTOFF, 10) == 1
    assert await storage.outbox.deliveries("done") == []
    assert len(await storage.outbox.deliveries("waiting")) == 1
