"""The ExecutionSignals contract, run against every adapter through `storage`, then what only
PostgreSQL offers: signals between storages (processes) and a listener that survives losing
its connection.

Signals of one store reach a listener in the order their writes committed, so to show that a
write signalled nothing, the tests make a later write (`settle`) and wait for its signal: by
then any signal of the first one would have come.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from adapters.storage.pg_signals import PostgresSignals
from core.model import EventKind, Execution, ExecutionEvent, ExecutionState, WorkflowRef
from tests.contract.pg import postgres_dsn, postgres_storage, replicas

PROMPT = 5.0  # seconds a listener may take to hear a write
BOUND = 15.0  # seconds any wait here lasts at most
LEASE = 30.0


def execution(execution_id: str, state=ExecutionState.CREATED) -> Execution:
    now = time.time()
    return Execution(
        execution_id=execution_id,
        ref=WorkflowRef("billing", "invoice"),
        version=1,
        state=state,
        input={"n": 1},
        created_at=now,
        updated_at=now,
    )


def event(execution_id: str, seq: int) -> ExecutionEvent:
    return ExecutionEvent(execution_id, seq, EventKind.TASK_COMPLETED, f"t#{seq}", seq, time.time())


async def heard(listener, timeout: float = PROMPT) -> bool:
    return await asyncio.wait_for(listener.wait(timeout), BOUND)


async def settle(storage) -> None:
    """Returns once the signals of every write made so far have come."""
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    listener = await storage.signals.listen(marker)
    try:
        await storage.executions.create(execution(marker, ExecutionState.PAUSED))
        assert await heard(listener)
    finally:
        listener.close()


async def test_every_write_of_an_execution_wakes_its_listener(storage):
    store = storage.executions
    changes = await storage.signals.listen("e")
    try:
        await store.create(execution("e"))
        assert await heard(changes)
        assert not await heard(changes, 0)  # a wait that returned True took the signal

        running = execution("e", ExecutionState.RUNNING)
        await store.save(running, [event("e", 1)])
        assert await heard(changes)
        await store.append([event("e", 2)])
        assert await heard(changes)

        await storage.leases.claim("w1", limit=1, lease=LEASE, now=time.time())
        assert await storage.leases.append_owned("w1", [event("e", 3)])
        assert await heard(changes)
        assert await storage.leases.save_owned("w1", execution("e", ExecutionState.COMPLETED))
        assert await heard(changes)
    finally:
        changes.close()


async def test_a_listener_hears_only_its_own_execution(storage):
    mine = await storage.signals.listen("mine")
    other = await storage.signals.listen("other")
    try:
        await storage.executions.create(execution("mine"))
        assert await heard(mine)
        await settle(storage)
        assert not await heard(other, 0)
    finally:
        mine.close()
        other.close()


async def test_the_claimable_listener_hears_what_a_worker_may_claim_and_nothing_else(storage):
    store = storage.executions
    claimable = await storage.signals.listen(None)
    try:
        await store.create(execution("paused", ExecutionState.PAUSED))
        await settle(storage)
        assert not await heard(claimable, 0)

        await store.create(execution("new"))
        assert await heard(claimable)

        await storage.leases.claim("w1", limit=5, lease=LEASE, now=time.time())
        assert await storage.leases.save_owned("w1", execution("new", ExecutionState.RUNNING))
        await settle(storage)
        assert not await heard(claimable, 0)  # still leased: nothing to claim

        await storage.leases.release("w1", ["new"])
        assert await heard(claimable)

        # A resume stores the paused execution as RUNNING, unleased.
        await store.save(execution("paused", ExecutionState.RUNNING))
        assert await heard(claimable)
    finally:
        claimable.close()


async def test_a_wait_returns_false_once_its_timeout_passes_without_a_signal(storage):
    for key in ("quiet", None):
        listener = await storage.signals.listen(key)
        try:
            assert await asyncio.wait_for(listener.wait(0.05), BOUND) is False
        finally:
            listener.close()


async def test_a_signal_that_comes_before_the_wait_is_kept_for_it(storage):
    first = await storage.signals.listen("e")
    second = await storage.signals.listen("e")
    try:
        await storage.executions.create(execution("e"))
        assert await heard(first)  # so the signal has reached `second` too, before its wait
        assert await heard(second, 0)
        assert not await heard(second, 0)
    finally:
        first.close()
        second.close()


async def test_a_closed_listener_hears_nothing(storage):
    listener = await storage.signals.listen("e")
    listener.close()
    listener.close()  # closing twice is harmless
    await storage.executions.create(execution("e"))
    await settle(storage)
    assert not await heard(listener, 0)


# -- the PostgreSQL adapter --------------------------------------------------------------------


async def test_without_a_listener_connection_waits_time_out_and_the_loss_is_logged_once(caplog):
    attempts = []

    async def refused() -> asyncpg.Connection:
        attempts.append(time.monotonic())
        raise ConnectionRefusedError("no server here")

    signals = PostgresSignals(refused, "flux")
    try:
        with caplog.at_level(logging.WARNING, logger="flux.storage"):
            listener = await asyncio.wait_for(signals.listen("e"), BOUND)
            assert await asyncio.wait_for(listener.wait(0.05), BOUND) is False
            deadline = time.monotonic() + BOUND
            while len(attempts) < 3:  # it keeps trying, with a growing delay
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    finally:
        await asyncio.wait_for(signals.close(), BOUND)


async def test_a_write_through_another_storage_wakes_this_ones_listeners():
    async with replicas(2) as (server, worker):
        changes = await server.signals.listen("e")
        claimable = await server.signals.listen(None)
        try:
            await worker.executions.create(execution("e"))
            assert await heard(changes)
            assert await heard(claimable)
        finally:
            changes.close()
            claimable.close()


async def test_installations_in_other_schemas_of_the_database_are_not_heard():
    async with postgres_storage() as mine, postgres_storage() as theirs:
        changes = await mine.signals.listen("e")
        claimable = await mine.signals.listen(None)
        try:
            await theirs.executions.create(execution("e"))
            await settle(mine)  # committed after theirs: its signal comes after theirs would
            assert not await heard(changes, 0)
            assert not await heard(claimable, 0)
        finally:
            changes.close()
            claimable.close()


async def test_listening_starts_again_after_the_connection_is_lost():
    # Ends every listener connection on the test database; the suite runs one test at a time.
    async with postgres_storage() as storage:
        first = await storage.signals.listen("e")
        try:
            await _end_listener_connections()
            # Down or back, a wait never fails; once back, every listener is woken once,
            # since what was sent while it was down is lost. Retried until then (bounded).
            deadline = time.monotonic() + BOUND
            while not await heard(first, 0.2):
                assert time.monotonic() < deadline, "the listener connection did not come back"
        finally:
            first.close()
        second = await storage.signals.listen("e")
        try:
            await storage.executions.create(execution("e"))
            assert await heard(second)
        finally:
            second.close()


async def test_closing_the_storage_closes_its_listener_connection():
    before = await _listener_connections()
    async with postgres_storage() as storage:
        listener = await storage.signals.listen(None)
        listener.close()
        assert await _listener_connections() == before + 1
    deadline = time.monotonic() + BOUND
    while await _listener_connections() != before:
        assert time.monotonic() < deadline, "the listener connection is still open"
        await asyncio.sleep(0.05)


_LISTENERS = (
    "FROM pg_stat_activity WHERE application_name = 'flux-listener' "
    "AND datname = current_database()"
)


async def _listener_connections() -> int:
    async with _admin() as admin:
        return await admin.fetchval(f"SELECT count(*) {_LISTENERS}")


async def _end_listener_connections() -> None:
    async with _admin() as admin:
        ended = await admin.fetch(f"SELECT pg_terminate_backend(pid) {_LISTENERS}")
    assert ended, "no listener connection to end"


@asynccontextmanager
async def _admin() -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(postgres_dsn(), timeout=BOUND)
    try:
        yield connection
    finally:
        await connection.close()
