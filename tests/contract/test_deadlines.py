"""The deadline part of the ExecutionLog contract (`save_if`, `overdue`), run against every
adapter through `storage`: the conditional save that cancels, deadlines and resumes race
through, and the query the deadline sweeper reads."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from attrs import evolve

from core.errors import AlreadyExists
from core.model import EventKind, Execution, ExecutionEvent, ExecutionState, WorkflowRef
from ports.catalog import NewWorkflow

S = ExecutionState


def execution(
    execution_id: str, state: ExecutionState = S.RUNNING, deadline: float | None = None
) -> Execution:
    return Execution(
        execution_id=execution_id,
        ref=WorkflowRef("billing", "invoice"),
        version=1,
        state=state,
        input={"n": 1},
        created_at=1.0,
        updated_at=1.0,
        deadline=deadline,
    )


def state_event(execution_id: str, seq: int, state: ExecutionState) -> ExecutionEvent:
    return ExecutionEvent(execution_id, seq, EventKind.STATE, "", str(state), 5.0)


async def test_save_if_writes_only_from_an_expected_state(storage):
    store = storage.executions
    running = execution("e")
    await store.create(running)
    done = evolve(running, state=S.COMPLETED, output={"ok": True}, updated_at=2.0)
    cancelled = evolve(running, state=S.CANCELLED, updated_at=3.0)

    assert await store.save_if(done, [state_event("e", 1, S.COMPLETED)], [S.RUNNING])
    assert await store.get("e") == done
    # The cancel read RUNNING before the completion landed: it writes nothing.
    assert not await store.save_if(cancelled, [state_event("e", 2, S.CANCELLED)], [S.RUNNING])
    assert await store.get("e") == done
    assert [e.seq for e in await store.events("e")] == [1]


async def test_save_if_of_an_unknown_execution_or_no_state_writes_nothing(storage):
    store = storage.executions
    assert not await store.save_if(execution("ghost"), [], [S.RUNNING])
    assert await store.get("ghost") is None
    await store.create(execution("e"))
    assert not await store.save_if(evolve(execution("e"), state=S.FAILED), [], [])
    assert (await store.get("e")).state is S.RUNNING


async def test_save_if_with_a_duplicate_event_writes_nothing(storage):
    store = storage.executions
    running = execution("e")
    await store.create(running)
    await store.append([state_event("e", 1, S.RUNNING)])
    failed = evolve(running, state=S.FAILED, updated_at=2.0)
    with pytest.raises(AlreadyExists):
        await store.save_if(failed, [state_event("e", 1, S.FAILED)], [S.RUNNING])
    assert (await store.get("e")).state is S.RUNNING


async def test_racing_conditional_saves_let_exactly_one_win(storage):
    store = storage.executions
    paused = execution("e", S.PAUSED, deadline=10.0)
    await store.create(paused)
    resumed = evolve(paused, state=S.RUNNING, deadline=None, updated_at=2.0)
    failed = evolve(paused, state=S.FAILED, updated_at=2.0)
    results = await asyncio.gather(
        store.save_if(resumed, [state_event("e", 1, S.RUNNING)], [S.PAUSED]),
        store.save_if(failed, [state_event("e", 1, S.FAILED)], [S.PAUSED]),
        return_exceptions=True,
    )
    assert results.count(True) == 1, results
    stored = await store.get("e")
    assert stored.state is (S.RUNNING if results[0] is True else S.FAILED)
    assert len(await store.events("e")) == 1


async def test_save_if_keeps_deadline_and_time_left(storage):
    store = storage.executions
    running = execution("e", deadline=50.0)
    await store.create(running)
    paused = evolve(running, state=S.PAUSED, deadline=None, time_left=12.5, pause_name="ok")
    assert await store.save_if(paused, [], [S.RUNNING])
    assert await store.get("e") == paused


async def test_overdue_lists_unfinished_executions_past_their_deadline_earliest_first(storage):
    store = storage.executions
    for item in [
        execution("late", S.RUNNING, deadline=20.0),
        execution("later", S.PAUSED, deadline=30.0),
        execution("created", S.CREATED, deadline=10.0),
        execution("future", S.RUNNING, deadline=500.0),
        execution("never", S.RUNNING, deadline=None),
        execution("done", S.COMPLETED, deadline=5.0),
        execution("failed", S.FAILED, deadline=5.0),
        execution("cancelled", S.CANCELLED, deadline=5.0),
    ]:
        await store.create(item)
    found = await store.overdue(100.0, 10)
    assert [e.execution_id for e in found] == ["created", "late", "later"]
    assert found[1] == execution("late", S.RUNNING, deadline=20.0)
    assert [e.execution_id for e in await store.overdue(100.0, 2)] == ["created", "late"]
    assert [e.execution_id for e in await store.overdue(20.0, 10)] == ["created", "late"]
    assert await store.overdue(9.0, 10) == []
    assert await store.overdue(100.0, 0) == []


async def test_a_workflow_timeout_is_stored_and_read_back_by_every_catalog_read(storage):
    catalog = storage.catalog
    ref = WorkflowRef("billing", "invoice")

    def new(source: str, timeout: float | None) -> NewWorkflow:
        digest = hashlib.sha256(source.encode()).hexdigest()
        return NewWorkflow(ref, source, digest, None, "doc", timeout=timeout)

    [first] = await catalog.register([new("v1", 2.5)])
    assert first.info.timeout == 2.5
    [again] = await catalog.register([new("v1", 2.5)])
    assert not again.created and again.info.timeout == 2.5
    [second] = await catalog.register([new("v2", None)])
    assert second.info.timeout is None
    assert [info.timeout for info in await catalog.versions(ref)] == [2.5, None]
    assert (await catalog.get(ref, 1)).info.timeout == 2.5
    assert (await catalog.get(ref)).info.timeout is None
    assert (await catalog.snapshot()).get(ref) == second.info
    assert await catalog.list() == [second.info]
