"""The callback outbox contract (`ports.callbacks.CallbackOutbox`, and the deliveries every save
into a told state writes), run against every storage adapter through `storage`."""

from __future__ import annotations

import asyncio
import json

import pytest
from attrs import evolve

from core.callbacks import Attempt
from core.model import EventKind, Execution, ExecutionEvent, ExecutionState, WorkflowRef
from tests.contract.pg import replicas

NOW = 1000.0
LEASE = 30.0
URL = "https://hooks.example.com/flux"


def execution(
    execution_id: str = "e1",
    state: ExecutionState = ExecutionState.RUNNING,
    *,
    callback_url: str | None = URL,
    service: str | None = "billing",
    at: float = NOW,
) -> Execution:
    return Execution(
        execution_id=execution_id,
        ref=WorkflowRef("acme", "invoice"),
        version=1,
        state=state,
        input={"n": 1},
        created_at=at,
        updated_at=at,
        service=service,
        callback_url=callback_url,
    )


def state_event(e: Execution, seq: int) -> ExecutionEvent:
    return ExecutionEvent(e.execution_id, seq, EventKind.STATE, "", str(e.state), e.updated_at)


async def finish(storage, e: Execution, state: ExecutionState, seq: int = 2, **changes) -> None:
    done = evolve(e, state=state, updated_at=e.updated_at + seq, **changes)
    await storage.executions.save(done, [state_event(done, seq)])


async def test_a_save_into_a_final_state_writes_one_delivery_of_the_detailed_shape(storage):
    e = execution()
    await storage.executions.create(e)
    await finish(storage, e, ExecutionState.COMPLETED, output={"total": 3})

    (d,) = await storage.outbox.deliveries("e1")
    assert d.delivery_id.startswith("msg_") and len(d.delivery_id) > 20
    assert (d.execution_id, d.url, d.attempts, d.delivered_at, d.gave_up_at) == (
        "e1",
        URL,
        0,
        None,
        None,
    )
    assert d.created_at == d.next_at == NOW + 2
    assert json.loads(d.payload) == {
        "execution_id": "e1",
        "state": "COMPLETED",
        "output": {"total": 3},
        "namespace": "acme",
        "workflow": "invoice",
    }
    assert await storage.outbox.next_due() == NOW + 2


async def test_each_told_state_is_told_once_and_other_saves_tell_nothing(storage):
    e = execution()
    await storage.executions.create(e)
    await storage.executions.save(evolve(e, updated_at=NOW + 1), [state_event(e, 1)])  # RUNNING
    await finish(storage, e, ExecutionState.FAILED, seq=2, output=None)
    await finish(storage, e, ExecutionState.FAILED, seq=3)  # the same state again
    found = await storage.outbox.deliveries("e1")
    assert [json.loads(d.payload)["state"] for d in found] == ["FAILED"]
    assert json.loads(found[0].payload)["error"]["type"] == "WorkflowError"


async def test_pause_then_resume_then_complete_is_two_deliveries(storage):
    e = execution()
    await storage.executions.create(e)
    await finish(storage, e, ExecutionState.PAUSED, seq=2, pause_name="approve", output={"q": 1})
    await finish(storage, e, ExecutionState.RUNNING, seq=3)
    await finish(storage, e, ExecutionState.COMPLETED, seq=4, output="ok")
    paused, completed = await storage.outbox.deliveries("e1")
    assert json.loads(paused.payload)["resume_url"] == "/services/billing/invoice/resume/e1"
    assert json.loads(completed.payload)["state"] == "COMPLETED"
    assert paused.delivery_id != completed.delivery_id


async def test_no_callback_url_no_delivery_and_a_by_ref_run_points_at_its_route(storage):
    plain = execution("plain", callback_url=None)
    by_ref = execution("ref", service=None)
    for e in (plain, by_ref):
        await storage.executions.create(e)
        await finish(storage, e, ExecutionState.PAUSED, pause_name="p")
    assert await storage.outbox.deliveries("plain") == []
    (d,) = await storage.outbox.deliveries("ref")
    assert json.loads(d.payload)["resume_url"] == "/workflows/acme/invoice/resume/ref"


async def test_the_first_save_of_an_execution_not_stored_yet_tells_it_too(storage):
    done = execution("new", ExecutionState.CANCELLED)
    await storage.executions.save(done, [state_event(done, 1)])
    (d,) = await storage.outbox.deliveries("new")
    assert json.loads(d.payload)["state"] == "CANCELLED"


async def test_an_owned_save_tells_its_state_and_a_refused_one_writes_nothing(storage):
    await storage.executions.create(execution("a", ExecutionState.CREATED))
    await storage.executions.create(execution("b", ExecutionState.CREATED))
    claimed = await storage.leases.claim("w1", limit=2, lease=LEASE, now=NOW)
    assert len(claimed) == 2
    a, b = sorted(claimed, key=lambda e: e.execution_id)
    done = evolve(a, state=ExecutionState.COMPLETED, output=1, updated_at=NOW + 1)
    assert await storage.leases.save_owned("w1", done, [state_event(done, 1)])
    lost = evolve(b, state=ExecutionState.COMPLETED, updated_at=NOW + 1)
    assert not await storage.leases.save_owned("w2", lost, [state_event(lost, 1)])
    assert len(await storage.outbox.deliveries("a")) == 1
    assert await storage.outbox.deliveries("b") == []


async def test_a_conditional_save_tells_its_state_only_when_it_wrote(storage):
    e = execution()
    await storage.executions.create(e)
    cancelled = evolve(e, state=ExecutionState.CANCELLED, updated_at=NOW + 1)
    running = [ExecutionState.RUNNING]
    assert await storage.executions.save_if(cancelled, [state_event(cancelled, 1)], running)
    again = evolve(cancelled, state=ExecutionState.FAILED)
    assert not await storage.executions.save_if(again, [state_event(again, 2)], running)
    found = await storage.outbox.deliveries("e1")
    assert [json.loads(d.payload)["state"] for d in found] == ["CANCELLED"]


async def told(storage, count: int) -> list[str]:
    for i in range(count):
        e = execution(f"e{i}", at=NOW + i)
        await storage.executions.create(e)
        await finish(storage, e, ExecutionState.COMPLETED, seq=1)
    return [(await storage.outbox.deliveries(f"e{i}"))[0].delivery_id for i in range(count)]


async def claim(storage, owner: str, now: float, limit: int = 10) -> list[str]:
    found = await storage.outbox.claim(owner, limit=limit, lease=LEASE, now=now)
    return [d.delivery_id for d in found]


async def test_claim_takes_due_deliveries_oldest_first_each_to_one_owner(storage):
    ids = await told(storage, 3)  # due at NOW+1, NOW+2, NOW+3
    assert await claim(storage, "s1", NOW + 2.5, limit=1) == ids[:1]
    assert await storage.outbox.next_due() == NOW + 2  # the next one not held
    assert await claim(storage, "s2", NOW + 2.5) == ids[1:2]
    assert await claim(storage, "s2", NOW + 2.5) == []
    assert await claim(storage, "s3", NOW + 3) == ids[2:]
    assert await storage.outbox.next_due() == NOW + 2.5 + LEASE  # all held: the first lease's end
    # A lease taken over only once it expired.
    assert await claim(storage, "s4", NOW + 1 + LEASE) == []
    assert await claim(storage, "s4", NOW + 4 + LEASE) == ids


async def test_settle_records_delivery_retry_and_give_up_and_only_for_the_owner(storage):
    first, second, third = await told(storage, 3)
    await claim(storage, "s1", NOW + 5)
    assert not await storage.outbox.settle("s2", first, Attempt(NOW + 6))
    assert await storage.outbox.settle("s1", first, Attempt(NOW + 6))
    assert await storage.outbox.settle("s1", second, Attempt(NOW + 6, "HTTP 500", NOW + 7))
    assert await storage.outbox.settle("s1", third, Attempt(NOW + 6, "HTTP 410", None))
    assert not await storage.outbox.settle("s1", first, Attempt(NOW + 8))  # not held any more

    (done,) = await storage.outbox.deliveries("e0")
    (retry,) = await storage.outbox.deliveries("e1")
    (given_up,) = await storage.outbox.deliveries("e2")
    assert (done.attempts, done.delivered_at, done.gave_up_at) == (1, NOW + 6, None)
    assert (retry.attempts, retry.next_at, retry.last_error, retry.delivered_at) == (
        1,
        NOW + 7,
        "HTTP 500",
        None,
    )
    assert (given_up.attempts, given_up.gave_up_at, given_up.last_error) == (1, NOW + 6, "HTTP 410")
    assert await storage.outbox.next_due() == NOW + 7  # only the one still owed
    assert await claim(storage, "s1", NOW + 6.5) == []
    assert await claim(storage, "s1", NOW + 7) == [second]
    assert await storage.outbox.settle("s1", second, Attempt(NOW + 8))
    assert await storage.outbox.next_due() is None
    # The id and the body stay what they were on every attempt.
    (retried,) = await storage.outbox.deliveries("e1")
    assert (retried.delivery_id, retried.payload, retried.attempts) == (
        retry.delivery_id,
        retry.payload,
        2,
    )
    assert retried.last_error == "HTTP 500"  # the last failure stays readable


async def test_release_frees_an_owners_leases_at_once(storage):
    ids = await told(storage, 2)
    assert await claim(storage, "s1", NOW + 5) == ids
    await storage.outbox.release("s2")
    assert await claim(storage, "s2", NOW + 5) == []
    await storage.outbox.release("s1")
    assert await claim(storage, "s2", NOW + 5) == ids


@pytest.mark.parametrize("claimers", [2])
async def test_two_replicas_claiming_together_take_each_delivery_once(claimers):
    async with replicas(claimers) as stores:
        one = stores[0]
        for i in range(40):
            e = execution(f"e{i}", at=NOW)
            await one.executions.create(e)
            await finish(one, e, ExecutionState.COMPLETED, seq=1)

        async def drain(store, owner: str) -> list[str]:
            taken: list[str] = []
            for _ in range(20):  # bounded: 40 deliveries, at most 3 a claim
                found = await claim(store, owner, NOW + 5, limit=3)
                if not found and await store.outbox.next_due() is None:
                    break
                taken += found
                for delivery_id in found:
                    assert await store.outbox.settle(owner, delivery_id, Attempt(NOW + 6))
            return taken

        results = await asyncio.gather(
            *(drain(store, f"replica{i}") for i, store in enumerate(stores))
        )
        every = [d for taken in results for d in taken]
        assert len(every) == len(set(every)) == 40
        assert all(results), "each replica took some"
