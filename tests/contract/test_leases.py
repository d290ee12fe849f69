"""The lease part of the ExecutionStore contract (claim, renew, release, save_owned,
append_owned), run against every adapter through `storage`."""

from __future__ import annotations

import asyncio

import pytest
from attrs import evolve

from core.errors import AlreadyExists
from core.model import EventKind, Execution, ExecutionEvent, ExecutionState, WorkflowRef

LEASE = 30.0
NOW = 1000.0


def execution(execution_id: str, state=ExecutionState.CREATED, at: float = 1.0) -> Execution:
    return Execution(
        execution_id=execution_id,
        ref=WorkflowRef("billing", "invoice"),
        version=1,
        state=state,
        input={"n": 1},
        created_at=at,
        updated_at=at,
    )


def event(execution_id: str, seq: int, key: str = "t#0") -> ExecutionEvent:
    return ExecutionEvent(execution_id, seq, EventKind.TASK_COMPLETED, key, {"v": seq}, NOW)


async def claim(storage, owner: str, limit: int = 10, now: float = NOW) -> list[str]:
    found = await storage.leases.claim(owner, limit=limit, lease=LEASE, now=now)
    return [e.execution_id for e in found]


async def test_claim_takes_created_and_running_oldest_first_up_to_the_limit(storage):
    store = storage.executions
    await store.create(execution("c", at=3.0))
    await store.create(execution("a", at=1.0))
    await store.create(execution("r", ExecutionState.RUNNING, at=2.0))
    for done, state in [("p", ExecutionState.PAUSED), ("x", ExecutionState.COMPLETED)]:
        await store.create(execution(done, state, at=0.5))

    assert await claim(storage, "w1", limit=2) == ["a", "r"]
    assert await claim(storage, "w2") == ["c"]
    assert await claim(storage, "w3") == []
    claimed = await storage.leases.claim("w1", limit=1, lease=LEASE, now=NOW)
    assert claimed == []


async def test_a_lease_is_taken_over_only_once_it_has_expired(storage):
    await storage.executions.create(execution("e"))
    assert await claim(storage, "w1") == ["e"]
    assert await claim(storage, "w2", now=NOW + LEASE - 1) == []
    assert await claim(storage, "w2", now=NOW + LEASE + 1) == ["e"]
    assert await claim(storage, "w1", now=NOW + LEASE + 2) == []


async def test_renew_extends_held_leases_and_reports_lost_ones(storage):
    store = storage.executions
    for name in "ab":
        await store.create(execution(name))
    assert await claim(storage, "w1") == ["a", "b"]
    held = await storage.leases.renew("w1", ["a", "b"], lease=LEASE, now=NOW + LEASE - 1)
    assert sorted(held) == ["a", "b"]
    # Renewed: still held past the first expiry.
    assert await claim(storage, "w2", now=NOW + LEASE + 1) == []
    assert await claim(storage, "w2", now=NOW + 2 * LEASE) == ["a", "b"]
    assert await storage.leases.renew("w1", ["a", "b"], lease=LEASE, now=NOW + 2 * LEASE) == []


async def test_release_makes_an_execution_claimable_at_once(storage):
    store = storage.executions
    await store.create(execution("e"))
    assert await claim(storage, "w1") == ["e"]
    await storage.leases.release("w2", ["e"])  # not the owner: no effect
    assert await claim(storage, "w2") == []
    await storage.leases.release("w1", ["e"])
    assert await claim(storage, "w2") == ["e"]


async def test_save_owned_writes_only_for_the_owner_and_a_final_state_ends_the_lease(storage):
    store = storage.executions
    created = execution("e")
    await store.create(created)
    assert await claim(storage, "w1") == ["e"]
    running = evolve(created, state=ExecutionState.RUNNING, updated_at=2.0)
    assert not await storage.leases.save_owned("w2", running, [event("e", 1)])
    assert (await store.get("e")).state is ExecutionState.CREATED
    assert await store.events("e") == []

    assert await storage.leases.save_owned("w1", running, [event("e", 1)])
    assert await store.get("e") == running
    assert await claim(storage, "w2") == []  # RUNNING keeps the lease

    done = evolve(running, state=ExecutionState.COMPLETED, output={"ok": True}, updated_at=3.0)
    assert await storage.leases.save_owned("w1", done, [event("e", 2, "t#1")])
    assert await store.get("e") == done
    assert [e.seq for e in await store.events("e")] == [1, 2]
    # Completed once: no second owner save, and nothing left to claim.
    assert not await storage.leases.save_owned("w1", done, [])
    assert await claim(storage, "w2", now=NOW + 10 * LEASE) == []


async def test_paused_ends_the_lease_and_a_resumed_execution_is_claimable(storage):
    store = storage.executions
    created = execution("e")
    await store.create(created)
    assert await claim(storage, "w1") == ["e"]
    paused = evolve(created, state=ExecutionState.PAUSED, pause_name="approve")
    assert await storage.leases.save_owned("w1", paused)
    assert await storage.leases.renew("w1", ["e"], lease=LEASE, now=NOW) == []
    await store.save(evolve(paused, state=ExecutionState.RUNNING, pause_name=None))
    assert await claim(storage, "w2") == ["e"]


async def test_a_taken_over_owner_can_neither_append_nor_save(storage):
    store = storage.executions
    created = execution("e")
    await store.create(created)
    assert await claim(storage, "w1") == ["e"]
    assert await storage.leases.append_owned("w1", [event("e", 1)])
    assert await claim(storage, "w2", now=NOW + LEASE + 1) == ["e"]

    assert not await storage.leases.append_owned("w1", [event("e", 2)])
    done = evolve(created, state=ExecutionState.COMPLETED)
    assert not await storage.leases.save_owned("w1", done)
    assert await storage.leases.append_owned("w2", [event("e", 2)])
    assert await storage.leases.save_owned("w2", done)
    assert [e.seq for e in await store.events("e")] == [1, 2]
    assert (await store.get("e")).state is ExecutionState.COMPLETED


async def test_save_owned_with_a_duplicate_event_writes_nothing(storage):
    store = storage.executions
    created = execution("e")
    await store.create(created)
    await claim(storage, "w1")
    assert await storage.leases.append_owned("w1", [event("e", 1)])
    with pytest.raises(AlreadyExists):
        await storage.leases.save_owned(
            "w1", evolve(created, state=ExecutionState.FAILED), [event("e", 1)]
        )
    assert (await store.get("e")).state is ExecutionState.CREATED
    assert await claim(storage, "w2", now=NOW + LEASE + 1) == ["e"]  # the lease was kept


async def test_concurrent_claimers_never_share_an_execution(storage):
    store = storage.executions
    for n in range(30):
        await store.create(execution(f"e{n:02}", at=float(n)))

    async def worker(owner: str) -> list[str]:
        taken: list[str] = []
        for _ in range(30):
            batch = await claim(storage, owner, limit=2)
            if not batch:
                break
            taken += batch
        return taken

    results = await asyncio.wait_for(asyncio.gather(*(worker(f"w{i}") for i in range(4))), 20)
    everything = [execution_id for taken in results for execution_id in taken]
    assert sorted(everything) == [f"e{n:02}" for n in range(30)]
