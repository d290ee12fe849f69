"""The SQLite storage as a whole: it opens the two connections, hands them to the stores of
each port, and closes them.

Connections: two plain `sqlite3` connections, each on a thread of its own and fed in batches
from the event loop (see `batching`), so no call blocks the loop and a batch costs one thread
hop however many statements it holds. ONE writer connection, behind the group-commit writer
(see `group_commit`), does every write, so concurrent service updates or execution saves never
race each other and many execution writes share one commit; it also applies the schema
migrations as it opens. The reader connection (see `batch_reader`) serves every read; WAL lets
it read while the writer writes. Each read is a snapshot of its own taken when its batch runs,
so a write is seen by any read asked after it returned, and the same statement asked by
concurrent callers in one batch runs once. `busy_timeout` covers other processes using the file.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from adapters.storage.batch_reader import BatchReader
from adapters.storage.group_commit import GroupCommitWriter
from adapters.storage.local_signals import LocalSignals
from adapters.storage.migrations import migrate
from adapters.storage.sqlite.api_keys import SqliteApiKeyStore
from adapters.storage.sqlite.catalog import SqliteCatalog
from adapters.storage.sqlite.executions import SqliteExecutionLog
from adapters.storage.sqlite.idempotency import SqliteIdempotencyKeys
from adapters.storage.sqlite.leases import SqliteLeases
from adapters.storage.sqlite.lock import DatabaseLock
from adapters.storage.sqlite.outbox import SqliteOutbox
from adapters.storage.sqlite.queries import SqliteQueries
from adapters.storage.sqlite.retention import SqliteRetention
from adapters.storage.sqlite.services import SqliteRevisions, SqliteServiceStore
from adapters.storage.sqlite.sql import Clock, read_one
from core.errors import StorageUnavailable
from ports.storage import Storage

BUSY_TIMEOUT_MS = 5000
HEALTH_TIMEOUT = 2.0  # seconds each probe of `health()` may take

PRAGMAS = (
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
)


def _connect(path: str, *pragmas: str) -> sqlite3.Connection:
    """A plain autocommit connection; opened on, and only ever used from, its owner's thread."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in (*PRAGMAS, *pragmas):
        db.execute(pragma)
    return db


def _connect_writer(path: str) -> sqlite3.Connection:
    db = _connect(path)
    try:
        migrate(db)  # before anything else writes; each migration commits itself
    except BaseException:
        db.close()
        raise
    return db


def _connect_reader(path: str) -> sqlite3.Connection:
    # query_only keeps every write on the writer, where the group commit orders them.
    return _connect(path, "PRAGMA query_only = ON")


class SqliteStorage:
    """The storage ports over one SQLite file; build it with `await SqliteStorage.open()`."""

    def __init__(
        self,
        writer: GroupCommitWriter,
        reader: BatchReader,
        clock: Clock,
        lock: DatabaseLock | None = None,
    ) -> None:
        self._lock = lock
        self._reader = reader
        self._writer = writer
        self.catalog = SqliteCatalog(reader, writer, clock)
        self.services = SqliteServiceStore(reader, writer, clock)
        self.signals = LocalSignals()
        self.executions = SqliteExecutionLog(reader, writer, self.signals)
        self.workflow_executions = self.executions
        self.queries = SqliteQueries(reader)
        self.leases = SqliteLeases(writer, self.signals)
        self.retention = SqliteRetention(writer)
        self.revisions = SqliteRevisions(reader)
        self.api_keys = SqliteApiKeyStore(reader, writer)
        self.idempotency = SqliteIdempotencyKeys(writer)
        self.outbox = SqliteOutbox(reader, writer)

    @classmethod
    async def open(
        cls, path: str | Path, clock: Clock = time.time, *, exclusive: bool = False
    ) -> SqliteStorage:
        """Open (creating if needed) the database file and apply pending migrations.

        `exclusive` (a server's storage): first take the file's lock (see `lock`), held until
        `close()` or the process's end; `StorageInUse` when another process holds it, before
        anything was read or written."""
        lock = await asyncio.to_thread(DatabaseLock.take, path) if exclusive else None
        try:
            writer = await GroupCommitWriter.open(lambda: _connect_writer(str(path)))
            try:
                reader = await BatchReader.open(lambda: _connect_reader(str(path)))
            except BaseException:
                await writer.close()
                raise
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        return cls(writer, reader, clock, lock)

    async def health(self) -> str:
        """A read, then a write that stores nothing new (the one row of `health_probe` updated in
        place, committed like any write so a full disk shows), each bounded in time."""
        try:
            await asyncio.wait_for(read_one(self._reader, "SELECT 1"), HEALTH_TIMEOUT)
        except (TimeoutError, Exception):
            return "unreachable"
        try:
            await asyncio.wait_for(self._writer.submit(_probe), HEALTH_TIMEOUT)
        except StorageUnavailable as fault:
            return "unreachable" if fault.details.get("reason") == "unreachable" else "read-only"
        except (TimeoutError, Exception):
            return "read-only"  # it reads, but a write does not land in time
        return "ok"

    async def close(self) -> None:
        try:
            await self._writer.close()
            await self._reader.close()
        finally:
            if self._lock is not None:
                self._lock.release()


def _probe(db: sqlite3.Connection) -> None:
    """On the writer, in its transaction: one page rewritten, nothing added."""
    db.execute("UPDATE health_probe SET at = ? WHERE id = 1", (time.time(),))


def _fits(storage: SqliteStorage) -> Storage:
    """Never called: mypy checks here that `SqliteStorage` offers every storage port."""
    return storage
