"""The storage contract (ports/), run against every adapter through `storage`."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
from pathlib import Path

import pytest
from attrs import evolve

from adapters.storage.sqlite import SqliteStorage
from core.errors import AlreadyExists, ServiceNotFound
from core.model import (
    EventKind,
    Execution,
    ExecutionError,
    ExecutionEvent,
    ExecutionState,
    ServiceDefinition,
    WorkflowRef,
)
from ports.catalog import NewWorkflow

BOUND = 20  # seconds: no test here may hang longer


def wf(ref: str, source: str = "def w(): pass", schema: dict | None = None) -> NewWorkflow:
    return NewWorkflow(
        ref=WorkflowRef.parse(ref),
        source=source,
        source_hash=hashlib.sha256(source.encode()).hexdigest(),
        input_schema=schema,
        description=f"doc of {ref}",
    )


def execution(execution_id: str, state=ExecutionState.CREATED, at: float = 1.0) -> Execution:
    return Execution(
        execution_id=execution_id,
        ref=WorkflowRef("billing", "invoice"),
        version=1,
        state=state,
        input={"amount": 10, "items": [1, 2]},
        created_at=at,
        updated_at=at,
    )


# --- catalog -------------------------------------------------------------------------------


async def test_register_stores_first_version_with_metadata(storage):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    [result] = await storage.catalog.register([wf("billing/invoice", schema=schema)])
    assert result.created
    assert result.info.ref == WorkflowRef("billing", "invoice")
    assert result.info.version == 1
    assert result.info.input_schema == schema
    assert result.info.description == "doc of billing/invoice"

    stored = await storage.catalog.get(WorkflowRef("billing", "invoice"))
    assert stored.info == result.info
    assert stored.source == "def w(): pass"
    assert stored.source_hash == wf("billing/invoice").source_hash


async def test_same_source_adds_no_version_and_keeps_revision(storage):
    await storage.catalog.register([wf("a/x"), wf("a/y")])
    revision = await storage.catalog.revision()
    results = await storage.catalog.register([wf("a/x"), wf("a/y")])
    assert [(r.info.version, r.created) for r in results] == [(1, False), (1, False)]
    assert await storage.catalog.revision() == revision
    assert [i.version for i in await storage.catalog.versions(WorkflowRef("a", "x"))] == [1]


async def test_changed_source_adds_a_version(storage):
    ref = WorkflowRef("a", "x")
    await storage.catalog.register([wf("a/x", "v1")])
    revision = await storage.catalog.revision()
    results = await storage.catalog.register([wf("a/x", "v2"), wf("a/y")])
    assert [(r.info.version, r.created) for r in results] == [(2, True), (1, True)]
    assert await storage.catalog.revision() != revision
    assert [i.version for i in await storage.catalog.versions(ref)] == [1, 2]
    assert (await storage.catalog.get(ref)).source == "v2"
    assert (await storage.catalog.get(ref, 1)).source == "v1"
    assert await storage.catalog.get(ref, 3) is None
    # Going back to an older source is a change too.
    [back] = await storage.catalog.register([wf("a/x", "v1")])
    assert (back.info.version, back.created) == (3, True)


async def test_unknown_workflow(storage):
    ref = WorkflowRef("a", "nope")
    assert await storage.catalog.get(ref) is None
    assert await storage.catalog.versions(ref) == []
    assert await storage.catalog.delete(ref) == 0


async def test_snapshot_and_list_hold_latest_versions_sorted(storage):
    await storage.catalog.register([wf("b/z", "1"), wf("a/y", "1"), wf("a/x", "1")])
    await storage.catalog.register([wf("a/x", "2")])
    snapshot = await storage.catalog.snapshot()
    assert snapshot.revision == await storage.catalog.revision()
    assert [(str(i.ref), i.version) for i in snapshot.workflows] == [
        ("a/x", 2),
        ("a/y", 1),
        ("b/z", 1),
    ]
    assert snapshot.get(WorkflowRef("a", "x")).version == 2
    assert [str(i.ref) for i in await storage.catalog.list()] == ["a/x", "a/y", "b/z"]
    assert [str(i.ref) for i in await storage.catalog.list("a")] == ["a/x", "a/y"]
    assert await storage.catalog.list("none") == []


async def test_snapshot_follows_every_change(storage):
    empty = await storage.catalog.snapshot()
    assert empty.workflows == ()
    await storage.catalog.register([wf("a/x")])
    first = await storage.catalog.snapshot()
    assert [str(i.ref) for i in first.workflows] == ["a/x"]
    assert first.revision != empty.revision
    await storage.catalog.delete(WorkflowRef("a", "x"))
    after = await storage.catalog.snapshot()
    assert after.workflows == ()
    assert after.revision not in (empty.revision, first.revision)


async def test_delete_one_version_or_all(storage):
    ref = WorkflowRef("a", "x")
    for source in ("1", "2", "3"):
        await storage.catalog.register([wf("a/x", source)])
    revision = await storage.catalog.revision()

    assert await storage.catalog.delete(ref, 3) == 1
    assert await storage.catalog.revision() != revision
    assert (await storage.catalog.get(ref)).info.version == 2
    assert (await storage.catalog.snapshot()).get(ref).version == 2

    revision = await storage.catalog.revision()
    assert await storage.catalog.delete(ref, 3) == 0
    assert await storage.catalog.revision() == revision

    assert await storage.catalog.delete(ref) == 2
    assert await storage.catalog.get(ref) is None
    assert await storage.catalog.versions(ref) == []
    assert await storage.catalog.list() == []


async def test_register_batch_in_one_step(storage):
    revision = await storage.catalog.revision()
    await storage.catalog.register([wf("a/x"), wf("a/y"), wf("b/x")])
    # One register moves the revision, however many workflows it holds.
    assert [str(i.ref) for i in await storage.catalog.list()] == ["a/x", "a/y", "b/x"]
    assert await storage.catalog.revision() > revision


# --- services ------------------------------------------------------------------------------


def service(name: str = "billing", **kw) -> ServiceDefinition:
    return ServiceDefinition(name=name, **kw)


async def test_service_create_get_and_round_trip(storage):
    definition = service(
        namespaces=("billing",),
        workflows=(WorkflowRef("shared", "audit"),),
        exclusions=(WorkflowRef("billing", "old"),),
        mcp_enabled=True,
    )
    revision = await storage.services.revision()
    assert await storage.services.create(definition) == definition
    assert await storage.services.get("billing") == definition
    assert await storage.services.revision() != revision
    assert await storage.services.get("missing") is None


async def test_service_duplicate_is_already_exists(storage):
    await storage.services.create(service(namespaces=("a",)))
    revision = await storage.services.revision()
    with pytest.raises(AlreadyExists):
        await storage.services.create(service(namespaces=("b",)))
    assert (await storage.services.get("billing")).namespaces == ("a",)
    assert await storage.services.revision() == revision


async def test_concurrent_duplicate_creates_exactly_one_wins(storage):
    attempts = [service(namespaces=(f"ns{i}",)) for i in range(5)]
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(storage.services.create(s) for s in attempts), return_exceptions=True),
        BOUND,
    )
    winners = [o for o in outcomes if isinstance(o, ServiceDefinition)]
    assert len(winners) == 1
    assert all(isinstance(o, AlreadyExists) for o in outcomes if o is not winners[0])
    assert await storage.services.get("billing") == winners[0]


async def test_service_list_sorted_by_name(storage):
    for name in ("zeta", "alpha", "mid"):
        await storage.services.create(service(name))
    assert [s.name for s in await storage.services.list()] == ["alpha", "mid", "zeta"]


async def test_service_update_moves_revisions(storage):
    await storage.services.create(service())
    revision = await storage.services.revision()
    updated = await storage.services.update(
        "billing", lambda s: evolve(s, namespaces=("billing",), mcp_enabled=True)
    )
    assert updated.revision == 2
    assert updated.namespaces == ("billing",)
    assert await storage.services.get("billing") == updated
    assert await storage.services.revision() != revision


async def test_revisions_read_both_kinds_together_and_follow_every_write(storage):
    async def both_ways() -> tuple[int, int]:
        together = await storage.revisions.current()
        assert together == (await storage.services.revision(), await storage.catalog.revision())
        return together

    seen = [await both_ways()]
    await storage.services.create(service())
    seen.append(await both_ways())
    await storage.catalog.register([wf("billing/invoice")])
    seen.append(await both_ways())
    await storage.services.update("billing", lambda s: evolve(s, mcp_enabled=True))
    seen.append(await both_ways())
    await storage.catalog.delete(WorkflowRef.parse("billing/invoice"))
    seen.append(await both_ways())
    services_moved = [b[0] != a[0] for a, b in zip(seen, seen[1:], strict=False)]
    catalog_moved = [b[1] != a[1] for a, b in zip(seen, seen[1:], strict=False)]
    assert services_moved == [True, False, True, False]
    assert catalog_moved == [False, True, False, True]


async def test_service_update_of_missing_service(storage):
    with pytest.raises(ServiceNotFound):
        await storage.services.update("missing", lambda s: s)


async def test_failing_edit_changes_nothing(storage):
    await storage.services.create(service(namespaces=("a",)))
    revision = await storage.services.revision()

    def broken(s: ServiceDefinition) -> ServiceDefinition:
        raise ValueError("bad edit")

    with pytest.raises(ValueError):
        await storage.services.update("billing", broken)
    assert await storage.services.get("billing") == service(namespaces=("a",))
    assert await storage.services.revision() == revision


async def test_concurrent_updates_never_lose_a_change(storage):
    await storage.services.create(service())
    revision = await storage.services.revision()

    def adding(namespace: str):
        return lambda s: evolve(s, namespaces=tuple(sorted({*s.namespaces, namespace})))

    names = [f"ns{i:02d}" for i in range(50)]
    await asyncio.wait_for(
        asyncio.gather(*(storage.services.update("billing", adding(n)) for n in names)), BOUND
    )
    final = await storage.services.get("billing")
    assert final.namespaces == tuple(names)
    assert final.revision == 51
    assert await storage.services.revision() == revision + 50


async def test_service_delete(storage):
    await storage.services.create(service())
    revision = await storage.services.revision()
    assert await storage.services.delete("billing") is True
    assert await storage.services.get("billing") is None
    assert await storage.services.revision() != revision
    revision = await storage.services.revision()
    assert await storage.services.delete("billing") is False
    assert await storage.services.revision() == revision
    # The name is free again.
    await storage.services.create(service())


# --- executions ----------------------------------------------------------------------------


async def test_execution_create_and_get(storage):
    created = execution("e1")
    await storage.executions.create(created)
    assert await storage.executions.get("e1") == created
    assert await storage.executions.get("missing") is None
    assert await storage.executions.events("e1") == []
    with pytest.raises(AlreadyExists):
        await storage.executions.create(execution("e1"))


async def test_a_save_writes_the_state_and_keeps_what_identifies_the_run(storage):
    await storage.executions.create(execution("e1"))
    await storage.executions.save(
        evolve(
            execution("e1"),
            state=ExecutionState.COMPLETED,
            output={"b": 1},
            updated_at=5.0,
            input={"other": True},
            version=9,
            created_at=99.0,
        )
    )
    assert await storage.executions.get("e1") == evolve(
        execution("e1"), state=ExecutionState.COMPLETED, output={"b": 1}, updated_at=5.0
    )
    # An execution not stored yet is stored whole.
    fresh = evolve(execution("e2"), state=ExecutionState.RUNNING)
    await storage.executions.save(fresh)
    assert await storage.executions.get("e2") == fresh


async def test_service_callback_and_deadlines_are_kept_and_deadlines_follow_saves(storage):
    first = evolve(
        execution("e1"),
        service="billing",
        callback_url="https://hooks.example/done",
        deadline=1_000.5,
    )
    await storage.executions.create(first)
    assert await storage.executions.get("e1") == first
    paused = evolve(
        first,
        state=ExecutionState.PAUSED,
        deadline=2_000.25,
        time_left=12.5,
        service="other",
        callback_url=None,
    )
    await storage.executions.save(paused)
    # The deadline and the time left follow the save; who started it and where it reports stay.
    assert await storage.executions.get("e1") == evolve(
        first, state=ExecutionState.PAUSED, deadline=2_000.25, time_left=12.5
    )
    await storage.executions.save(evolve(paused, deadline=None, time_left=None))
    stored = await storage.executions.get("e1")
    assert stored is not None and (stored.deadline, stored.time_left) == (None, None)
    assert stored.service == "billing"


async def test_execution_save_with_events_and_append(storage):
    await storage.executions.create(execution("e1"))
    running = evolve(execution("e1"), state=ExecutionState.RUNNING, updated_at=2.0)
    await storage.executions.save(
        running, [ExecutionEvent("e1", 0, EventKind.STATE, value="RUNNING", at=2.0)]
    )
    await storage.executions.append(
        [
            ExecutionEvent("e1", 2, EventKind.TASK_COMPLETED, "price#0", {"total": [1.5]}, 3.0),
            ExecutionEvent("e1", 1, EventKind.TASK_STARTED, "price#0", None, 2.5),
        ]
    )
    failed = evolve(
        running,
        state=ExecutionState.FAILED,
        error=ExecutionError("ValueError", "boom"),
        updated_at=4.0,
    )
    await storage.executions.save(failed)

    assert await storage.executions.get("e1") == failed
    events = await storage.executions.events("e1")
    assert [e.seq for e in events] == [0, 1, 2]
    assert events[2] == ExecutionEvent(
        "e1", 2, EventKind.TASK_COMPLETED, "price#0", {"total": [1.5]}, 3.0
    )
    assert events[0].kind is EventKind.STATE


async def test_paused_execution_keeps_output_and_pause_name(storage):
    paused = evolve(
        execution("e1"),
        state=ExecutionState.PAUSED,
        output={"question": "approve?"},
        pause_name="approval",
    )
    await storage.executions.create(execution("e1"))
    await storage.executions.save(paused)
    assert await storage.executions.get("e1") == paused


async def test_duplicate_event_seq_is_refused_and_writes_nothing(storage):
    await storage.executions.create(execution("e1"))
    await storage.executions.append([ExecutionEvent("e1", 0, EventKind.STATE, value="RUNNING")])
    with pytest.raises(AlreadyExists):
        await storage.executions.save(
            evolve(execution("e1"), state=ExecutionState.COMPLETED),
            [ExecutionEvent("e1", 0, EventKind.STATE, value="COMPLETED")],
        )
    # save is one transaction: the state did not move either.
    assert (await storage.executions.get("e1")).state is ExecutionState.CREATED
    assert [e.value for e in await storage.executions.events("e1")] == ["RUNNING"]


async def test_concurrent_writes_all_land(storage):
    ids = [f"e{i:03d}" for i in range(60)]
    await asyncio.wait_for(
        asyncio.gather(*(storage.executions.create(execution(i)) for i in ids)), BOUND
    )

    async def run(execution_id: str) -> None:
        await storage.executions.save(
            evolve(execution(execution_id), state=ExecutionState.RUNNING),
            [ExecutionEvent(execution_id, 0, EventKind.STATE, value="RUNNING")],
        )
        await storage.executions.append(
            [ExecutionEvent(execution_id, 1, EventKind.TASK_COMPLETED, "t#0", execution_id)]
        )

    # One bad write in the middle fails alone; its neighbours still commit.
    bad = storage.executions.append([ExecutionEvent("e000", 7, EventKind.STATE)] * 2)
    outcomes = await asyncio.wait_for(
        asyncio.gather(bad, *(run(i) for i in ids), return_exceptions=True), BOUND
    )
    assert isinstance(outcomes[0], AlreadyExists)
    assert all(o is None for o in outcomes[1:])
    running = await storage.executions.in_states([ExecutionState.RUNNING])
    assert sorted(e.execution_id for e in running) == ids
    for execution_id in ids[:5]:
        assert [e.value for e in await storage.executions.events(execution_id)] == [
            "RUNNING",
            execution_id,
        ]


async def test_a_write_is_seen_by_the_next_read_under_concurrent_reads(storage):
    """Read-your-writes while many reads overlap: each caller saves a new state and reads it
    back at once, as a resume right after a paused answer does."""
    ids = [f"r{i:03d}" for i in range(40)]
    await asyncio.wait_for(
        asyncio.gather(*(storage.executions.create(execution(i)) for i in ids)), BOUND
    )
    stale: list[str] = []

    async def save_then_read(execution_id: str) -> None:
        for state in (ExecutionState.RUNNING, ExecutionState.PAUSED, ExecutionState.COMPLETED):
            await storage.executions.save(evolve(execution(execution_id), state=state))
            found = await storage.executions.get(execution_id)
            if found.state is not state:
                stale.append(f"{execution_id}: wrote {state}, read {found.state}")

    async def keep_reading() -> None:
        for _ in range(200):
            await asyncio.gather(*(storage.executions.get(i) for i in ids[:8]))

    await asyncio.wait_for(asyncio.gather(keep_reading(), *(save_then_read(i) for i in ids)), BOUND)
    assert stale == []


async def test_in_states(storage):
    await storage.executions.create(execution("c", ExecutionState.RUNNING, at=3.0))
    await storage.executions.create(execution("a", ExecutionState.PAUSED, at=1.0))
    await storage.executions.create(execution("b", ExecutionState.COMPLETED, at=2.0))
    await storage.executions.create(execution("d", ExecutionState.RUNNING, at=0.5))
    found = await storage.executions.in_states([ExecutionState.RUNNING, ExecutionState.PAUSED])
    assert [e.execution_id for e in found] == ["d", "a", "c"]
    assert await storage.executions.in_states([ExecutionState.CANCELLED]) == []
    assert await storage.executions.in_states([]) == []


async def test_ping(storage):
    assert await storage.health() == "ok"


# --- sqlite only: the file outlives the process --------------------------------------------


async def test_sqlite_reopen_finds_everything(tmp_path):
    path = tmp_path / "flux.db"
    first = await SqliteStorage.open(path)
    try:
        await first.catalog.register([wf("a/x", "1"), wf("b/y")])
        await first.catalog.register([wf("a/x", "2")])
        await first.services.create(service(namespaces=("a",), mcp_enabled=True))
        await first.services.update(
            "billing", lambda s: evolve(s, exclusions=(WorkflowRef("a", "x"),))
        )
        paused = evolve(execution("e1"), state=ExecutionState.PAUSED, pause_name="p")
        await first.executions.create(execution("e1"))
        await first.executions.save(paused, [ExecutionEvent("e1", 0, EventKind.PAUSED, "p", 1)])
        before = (
            await first.catalog.snapshot(),
            await first.services.list(),
            await first.services.revision(),
        )
    finally:
        await first.close()
    assert await first.health() == "unreachable"

    second = await SqliteStorage.open(path)
    try:
        snapshot = await second.catalog.snapshot()
        assert snapshot == before[0]
        assert snapshot.revision == before[0].revision
        assert [i.version for i in await second.catalog.versions(WorkflowRef("a", "x"))] == [1, 2]
        assert await second.services.list() == before[1]
        assert await second.services.revision() == before[2]
        assert await second.executions.get("e1") == paused
        assert await second.executions.in_states([ExecutionState.PAUSED]) == [paused]
        assert [e.kind for e in await second.executions.events("e1")] == [EventKind.PAUSED]
    finally:
        await second.close()


async def test_sqlite_sees_writes_of_another_connection(tmp_path):
    # Two storages on one file stand in for two processes sharing it.
    path = tmp_path / "flux.db"
    one = await SqliteStorage.open(path)
    two = await SqliteStorage.open(path)
    try:
        assert (await two.catalog.snapshot()).workflows == ()
        await one.catalog.register([wf("a/x")])
        assert [str(i.ref) for i in (await two.catalog.snapshot()).workflows] == ["a/x"]
        await two.services.create(service())
        with pytest.raises(AlreadyExists):
            await one.services.create(service())
        await one.catalog.delete(WorkflowRef("a", "x"))
        assert (await two.catalog.snapshot()).workflows == ()
    finally:
        await one.close()
        await two.close()


async def test_sqlite_calls_after_close_fail(tmp_path):
    store = await SqliteStorage.open(tmp_path / "flux.db")
    await store.close()
    with pytest.raises(RuntimeError):
        await store.services.create(service())


_WRITER = """
import asyncio, sys
from adapters.storage.sqlite import SqliteStorage
from core.model import Execution, ExecutionState, WorkflowRef

async def main():
    storage = await SqliteStorage.open(sys.argv[1])
    ref = WorkflowRef("a", "b")
    await asyncio.gather(*(
        storage.executions.create(Execution(f"e{i}", ref, 1, ExecutionState.COMPLETED, output=i))
        for i in range(20)
    ))
    print("written", flush=True)
    await asyncio.sleep(60)  # killed before this ends; close() never runs

asyncio.run(main())
"""


async def test_sqlite_write_survives_kill_9_right_after_it_returns(tmp_path):
    path = tmp_path / "flux.db"
    root = Path(__file__).resolve().parents[2]
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _WRITER,
        str(path),
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(child.stdout.readline(), BOUND)
        assert line.strip() == b"written"
    finally:
        if child.returncode is None:
            os.kill(child.pid, signal.SIGKILL)
        await asyncio.wait_for(child.wait(), BOUND)

    storage = await SqliteStorage.open(path)
    try:
        done = await storage.executions.in_states([ExecutionState.COMPLETED])
        assert sorted(e.output for e in done) == list(range(20))
    finally:
        await storage.close()
