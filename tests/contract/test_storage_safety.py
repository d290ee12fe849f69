"""Data safety on every storage adapter: versions only grow, the unfinished executions of a
workflow, text every adapter refuses alike, numbers every adapter keeps alike, health."""

from __future__ import annotations

import pytest
from attrs import evolve

from core.errors import InvalidRequest, ServiceNotFound
from core.model import (
    EventKind,
    ExecutionError,
    ExecutionEvent,
    ExecutionState,
    ServiceDefinition,
    WorkflowRef,
)
from tests.contract.test_storage import execution, wf

REF = WorkflowRef("a", "x")

# --- versions only grow --------------------------------------------------------------------


async def test_versions_are_not_reused_after_deleting_all(storage):
    await storage.catalog.register([wf("a/x", "1")])
    await storage.catalog.register([wf("a/x", "2")])
    assert await storage.catalog.delete(REF) == 2

    [again] = await storage.catalog.register([wf("a/x", "edited")])
    assert again.created and again.info.version == 3
    assert [i.version for i in await storage.catalog.versions(REF)] == [3]
    assert await storage.catalog.get(REF, 1) is None
    assert await storage.catalog.get(REF, 2) is None


async def test_versions_are_not_reused_after_deleting_the_latest(storage):
    for source in ("1", "2", "3"):
        await storage.catalog.register([wf("a/x", source)])
    await storage.catalog.delete(REF, 3)
    [next_one] = await storage.catalog.register([wf("a/x", "4")])
    assert next_one.info.version == 4
    assert [i.version for i in await storage.catalog.versions(REF)] == [1, 2, 4]


async def test_the_same_source_after_a_delete_is_a_new_version(storage):
    await storage.catalog.register([wf("a/x", "1")])
    await storage.catalog.delete(REF)
    [back] = await storage.catalog.register([wf("a/x", "1")])
    assert back.created and back.info.version == 2


async def test_versions_of_other_refs_are_their_own(storage):
    await storage.catalog.register([wf("a/x", "1"), wf("a/y", "1")])
    await storage.catalog.delete(REF)
    [x, y] = await storage.catalog.register([wf("a/x", "2"), wf("a/y", "2")])
    assert (x.info.version, y.info.version) == (2, 2)


# --- the unfinished executions of a workflow -----------------------------------------------


async def test_unfinished_lists_created_running_and_paused_of_the_ref(storage):
    states = {
        "c": ExecutionState.CREATED,
        "r": ExecutionState.RUNNING,
        "p": ExecutionState.PAUSED,
        "done": ExecutionState.COMPLETED,
        "failed": ExecutionState.FAILED,
        "cancelled": ExecutionState.CANCELLED,
    }
    for at, (execution_id, state) in enumerate(states.items()):
        await storage.executions.create(evolve(execution(execution_id, state, at=at), ref=REF))
    await storage.executions.create(evolve(execution("v2", at=9), ref=REF, version=2))
    await storage.executions.create(execution("other"))  # billing/invoice

    found = storage.workflow_executions
    assert await found.unfinished(REF) == ["c", "r", "p", "v2"]
    assert await found.unfinished(REF, 1) == ["c", "r", "p"]
    assert await found.unfinished(REF, 2) == ["v2"]
    assert await found.unfinished(REF, 3) == []
    assert await found.unfinished(WorkflowRef("a", "nope")) == []

    paused = await storage.executions.get("p")
    await storage.executions.save(evolve(paused, state=ExecutionState.CANCELLED))
    assert await found.unfinished(REF, 1) == ["c", "r"]


# --- text the database cannot store: refused alike ------------------------------------------

UNSTORABLE = ["a\x00b", "\ud800", "x\udfffy"]


@pytest.mark.parametrize("bad", UNSTORABLE)
async def test_unstorable_text_in_an_input_value_or_key_is_refused(storage, bad):
    for value in ({"s": bad}, {bad: 1}, [1, {"deep": [bad]}], bad):
        with pytest.raises(InvalidRequest, match="NUL or an unpaired surrogate"):
            await storage.executions.create(evolve(execution("e1"), input=value))
    assert await storage.executions.get("e1") is None


@pytest.mark.parametrize("bad", UNSTORABLE)
async def test_unstorable_text_in_a_saved_execution_or_event_is_refused(storage, bad):
    await storage.executions.create(execution("e1"))
    running = evolve(execution("e1"), state=ExecutionState.RUNNING)
    cases = [
        (evolve(running, output={"k": bad}), []),
        (evolve(running, error=ExecutionError("E", bad)), []),
        (evolve(running, state=ExecutionState.PAUSED, pause_name=bad), []),
        (running, [ExecutionEvent("e1", 0, EventKind.TASK_COMPLETED, bad, 1.0)]),
        (running, [ExecutionEvent("e1", 0, EventKind.TASK_COMPLETED, "k", {bad: 1})]),
    ]
    for saved, events in cases:
        with pytest.raises(InvalidRequest):
            await storage.executions.save(saved, events)
    with pytest.raises(InvalidRequest):
        await storage.executions.append([ExecutionEvent("e1", 0, EventKind.STATE, "k", bad)])
    assert await storage.executions.get("e1") == execution("e1")  # nothing of it written
    assert await storage.executions.events("e1") == []


@pytest.mark.parametrize("bad", UNSTORABLE)
async def test_unstorable_text_as_an_id_or_name_finds_nothing(storage, bad):
    assert await storage.executions.get(f"e{bad}") is None
    assert await storage.executions.events(f"e{bad}") == []
    with pytest.raises(InvalidRequest):
        await storage.executions.create(execution(f"e{bad}"))
    assert await storage.services.get(bad) is None
    assert await storage.services.delete(bad) is False
    with pytest.raises(ServiceNotFound):
        await storage.services.update(bad, lambda s: s)
    with pytest.raises(InvalidRequest):
        await storage.services.create(ServiceDefinition(f"s{bad}"))
    await storage.services.create(ServiceDefinition("billing"))
    with pytest.raises(InvalidRequest):
        await storage.services.update("billing", lambda s: evolve(s, namespaces=(bad,)))
    assert (await storage.services.get("billing")).namespaces == ()


async def test_unstorable_text_in_a_workflow_is_refused(storage):
    with pytest.raises(InvalidRequest):
        await storage.catalog.register([wf("a/x", schema={"title": "\x00"})])
    assert await storage.catalog.versions(REF) == []


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
async def test_numbers_json_cannot_hold_are_refused(storage, number):
    with pytest.raises(InvalidRequest, match="not finite"):
        await storage.executions.create(evolve(execution("e1"), input={"n": number}))
    assert await storage.executions.get("e1") is None


async def test_text_that_can_be_stored_comes_back_as_it_was(storage):
    value = {"emoji 😀": '😀 \u2028 \x01 \\u0000 "q"', "tab\t": ["é", "\U0010ffff"]}
    await storage.executions.create(evolve(execution("e1"), input=value))
    assert (await storage.executions.get("e1")).input == value


async def test_integers_past_64_bits_come_back_as_they_were(storage):
    big = {"big": 2**70, "neg": -(2**65) - 1, "list": [2**64, 10**30], "float": 1.5e300}
    await storage.executions.create(evolve(execution("e1"), input=big))
    await storage.executions.save(
        evolve(execution("e1"), state=ExecutionState.COMPLETED, output=2**80),
        [ExecutionEvent("e1", 0, EventKind.TASK_COMPLETED, "t", 2**90, 1.0)],
    )
    stored = await storage.executions.get("e1")
    assert stored.input == big and stored.output == 2**80
    assert type(stored.input["big"]) is int
    assert [e.value for e in await storage.executions.events("e1")] == [2**90]


# --- health ----------------------------------------------------------------------------------


async def test_health_is_ok_and_stores_nothing(storage):
    before = await storage.catalog.revision(), await storage.services.revision()
    for _ in range(3):
        assert await storage.health() == "ok"
    assert (await storage.catalog.revision(), await storage.services.revision()) == before


async def test_key_order_comes_back_as_it_was(storage):
    value = {"zeta": 1, "alpha": {"y": 1, "b": 2}, "mid": [{"k2": 1, "k1": 2}]}
    await storage.executions.create(evolve(execution("e1"), input=value, output=None))
    stored = (await storage.executions.get("e1")).input
    assert list(stored) == ["zeta", "alpha", "mid"]
    assert list(stored["alpha"]) == ["y", "b"] and list(stored["mid"][0]) == ["k2", "k1"]
