"""SQLite storage over aiosqlite: the same file layout, statements and batching as
`adapters/storage/sqlite/`, with aiosqlite's connection threads instead of hand-written ones.
Picked by `FLUX_SQLITE_DRIVER=aiosqlite` (see `factory`), for the comparison of
docs/architecture.md."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiosqlite

from adapters.storage.local_signals import LocalSignals
from adapters.storage.sqlite.services import SqliteRevisions
from adapters.storage.sqlite.sql import Clock, read_one
from adapters.storage.sqlite.storage import PRAGMAS, _connect_writer
from adapters.storage.sqlite_aio.batching import AioReader, AioWriter
from adapters.storage.sqlite_aio.stores import (
    AioApiKeyStore,
    AioCatalog,
    AioExecutionLog,
    AioLeases,
    AioServiceStore,
    _as_base,
)
from ports.storage import Storage


async def _connect(path: str, *pragmas: str) -> aiosqlite.Connection:
    # Autocommit, so that the writer's BEGIN IMMEDIATE and COMMIT are its own; aiosqlite's
    # thread owns the connection, the loop only reads `total_changes` and `in_transaction`.
    db = await aiosqlite.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in (*PRAGMAS, *pragmas):
        await db.execute(pragma)
    return db


class AioSqliteStorage:
    def __init__(self, writer: AioWriter, reader: AioReader, clock: Clock) -> None:
        self._reader = reader
        self._writer = writer
        self.catalog = AioCatalog(reader, writer, clock)
        self.services = AioServiceStore(reader, writer, clock)
        self.signals = LocalSignals()
        self.executions = AioExecutionLog(reader, writer, self.signals)
        self.leases = AioLeases(writer, self.signals)
        self.revisions = SqliteRevisions(_as_base(reader, writer)[0])
        self.api_keys = AioApiKeyStore(reader, writer)

    @classmethod
    async def open(cls, path: str | Path, clock: Clock = time.time) -> AioSqliteStorage:
        # The migrations are the hand-written adapter's, on a plain connection in a thread:
        # they run once, at start-up, and are not what is compared.
        await asyncio.to_thread(lambda: _connect_writer(str(path)).close())
        writer = await AioWriter.open(await _connect(str(path)))
        try:
            reader = await AioReader.open(await _connect(str(path), "PRAGMA query_only = ON"))
        except BaseException:
            await writer.close()
            raise
        return cls(writer, reader, clock)

    async def ping(self) -> bool:
        try:
            return await read_one(_as_base(self._reader, self._writer)[0], "SELECT 1") == (1,)
        except Exception:
            return False

    async def close(self) -> None:
        await self._writer.close()
        await self._reader.close()


def _fits(storage: AioSqliteStorage) -> Storage:
    """Never called: mypy checks here that `AioSqliteStorage` offers every storage port."""
    return storage
