"""Storage trouble, answered: one server per SQLite file (the lock), a database locked by
another process, a lost PostgreSQL connection; each becomes a typed error, never a bare one."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import sqlite3
import sys
from pathlib import Path

import asyncpg
import pytest

from adapters.storage.faults import sqlite_fault
from adapters.storage.postgres.guard import pg_fault
from adapters.storage.sqlite import SqliteStorage
from adapters.storage.sqlite import storage as sqlite_storage
from adapters.storage.sqlite.lock import DatabaseLock, lock_path
from core.errors import InvalidRequest, StorageInUse, StorageUnavailable
from core.model import ServiceDefinition
from tests.contract.pg import postgres_dsn, postgres_storage
from tests.contract.test_storage import execution

BOUND = 20

# --- one server per SQLite file --------------------------------------------------------------


async def test_a_second_exclusive_open_is_refused_naming_the_holder(tmp_path):
    path = tmp_path / "flux.db"
    first = await SqliteStorage.open(path, exclusive=True)
    try:
        with pytest.raises(StorageInUse) as refused:
            await SqliteStorage.open(path, exclusive=True)
        assert refused.value.details["pid"] == os.getpid()
        assert str(os.getpid()) in refused.value.message
        assert "\n" not in refused.value.message
        assert lock_path(path).read_text().strip() == str(os.getpid())
        # Tools that only read or add keys (not a server) still open it.
        other = await SqliteStorage.open(path)
        await other.close()
        assert await first.health() == "ok"
    finally:
        await first.close()
    again = await SqliteStorage.open(path, exclusive=True)  # close() let it go
    await again.close()


async def test_a_refused_open_touches_nothing(tmp_path):
    path = tmp_path / "flux.db"
    holder = await asyncio.to_thread(DatabaseLock.take, path)
    try:
        with pytest.raises(StorageInUse):
            await SqliteStorage.open(path, exclusive=True)
        assert not path.exists()  # no file made, no migration run
    finally:
        holder.release()


_HOLDER = """
import sys, time
from adapters.storage.sqlite.lock import DatabaseLock
DatabaseLock.take(sys.argv[1])
print("held", flush=True)
time.sleep(60)
"""


async def test_a_holder_killed_with_sigkill_leaves_no_stale_lock(tmp_path):
    path = tmp_path / "flux.db"
    root = Path(__file__).resolve().parents[2]
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _HOLDER,
        str(path),
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert (await asyncio.wait_for(child.stdout.readline(), BOUND)).strip() == b"held"
        with pytest.raises(StorageInUse) as refused:
            await SqliteStorage.open(path, exclusive=True)
        assert refused.value.details["pid"] == child.pid
    finally:
        if child.returncode is None:
            os.kill(child.pid, signal.SIGKILL)
        await asyncio.wait_for(child.wait(), BOUND)
    storage = await SqliteStorage.open(path, exclusive=True)
    await storage.close()


# --- a SQLite file locked by another process --------------------------------------------------


@pytest.fixture
def short_busy_timeout(monkeypatch):
    monkeypatch.setattr(
        sqlite_storage,
        "PRAGMAS",
        ("PRAGMA busy_timeout = 200", *sqlite_storage.PRAGMAS[1:]),
    )


async def test_an_exclusive_lock_of_another_connection_is_busy_then_passes(
    tmp_path, short_busy_timeout
):
    path = tmp_path / "flux.db"
    storage = await SqliteStorage.open(path)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StorageUnavailable) as busy:
            await storage.services.create(ServiceDefinition("billing"))
        assert busy.value.code == "storage_unavailable"
        assert busy.value.details["reason"] == "busy"
        with pytest.raises(StorageUnavailable) as named:
            await storage.executions.create(execution("e1"))
        assert named.value.details == {"reason": "busy", "execution_id": "e1"}
        assert await storage.health() == "read-only"
        assert await storage.services.get("billing") is None  # reads go on

        other.execute("ROLLBACK")
        await storage.services.create(ServiceDefinition("billing"))
        await storage.executions.create(execution("e1"))
        assert await storage.health() == "ok"
    finally:
        other.close()
        await storage.close()


def test_sqlite_and_os_errors_map_to_reasons():
    def code(name: str, number: int) -> sqlite3.OperationalError:
        exc = sqlite3.OperationalError(name)
        exc.sqlite_errorcode = number
        exc.sqlite_errorname = name
        return exc

    cases = {
        code("SQLITE_BUSY", 5): "busy",
        code("SQLITE_LOCKED", 6): "busy",
        code("SQLITE_FULL", 13): "full",
        code("SQLITE_READONLY_DBMOVED", 8 | (4 << 8)): "read-only",
        code("SQLITE_IOERR_WRITE", 10 | (3 << 8)): "unreachable",
        OSError(errno.ENOSPC, "No space left on device"): "full",
        OSError(errno.EROFS, "Read-only file system"): "read-only",
        OSError(errno.EIO, "Input/output error"): "unreachable",
    }
    for exc, reason in cases.items():
        fault = sqlite_fault(exc)
        assert fault is not None and fault.details == {"reason": reason}, exc
    assert sqlite_fault(sqlite3.IntegrityError("UNIQUE")) is None
    assert sqlite_fault(ValueError("x")) is None


def test_postgres_errors_map_to_reasons():
    assert pg_fault(asyncpg.ConnectionDoesNotExistError("gone")).details == {
        "reason": "unreachable"
    }
    assert pg_fault(asyncpg.DiskFullError("full")).details == {"reason": "full"}
    assert pg_fault(asyncpg.ReadOnlySQLTransactionError("ro")).details == {"reason": "read-only"}
    assert pg_fault(ConnectionRefusedError()).details == {"reason": "unreachable"}
    assert pg_fault(asyncpg.InterfaceError("connection is closed")).details == {
        "reason": "unreachable"
    }
    assert isinstance(pg_fault(asyncpg.CharacterNotInRepertoireError("0x00")), InvalidRequest)
    assert pg_fault(asyncpg.UniqueViolationError("dup")) is None
    assert pg_fault(asyncpg.InterfaceError("another operation is in progress")) is None
    assert pg_fault(TimeoutError()) is None


# --- a lost PostgreSQL connection ---------------------------------------------------------------


async def test_a_read_on_a_dropped_postgres_connection_is_answered():
    dsn = postgres_dsn()
    async with postgres_storage(min_size=1, max_size=1) as storage:
        await storage.services.create(ServiceDefinition("billing"))
        admin = await asyncpg.connect(dsn)
        try:
            for _ in range(3):
                backend = await storage._pool.fetchval("SELECT pg_backend_pid()")
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", backend)
                # Whether the pool noticed or the read meets the dead connection, it answers.
                assert (await storage.services.get("billing")).name == "billing"
        finally:
            await admin.close()
        assert await storage.health() == "ok"


async def test_a_postgres_server_that_is_away_is_unavailable_not_a_bare_error():
    async with postgres_storage(min_size=1, max_size=1) as storage:
        await storage._pool.close()
        with pytest.raises(StorageUnavailable) as away:
            await storage.executions.get("e1")
        assert away.value.details["reason"] == "unreachable"
        with pytest.raises(StorageUnavailable) as write:
            await storage.executions.create(execution("e1"))
        assert write.value.details == {"reason": "unreachable", "execution_id": "e1"}
        assert await storage.health() == "unreachable"
