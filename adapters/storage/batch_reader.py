"""Batched reads over one plain SQLite connection that lives on a thread of its own.

The reader twin of `group_commit`: reads queued while the reader thread is busy go over to it
together in one step (see `batching`), instead of one thread hop per statement.

Each job runs on its own, not in a shared transaction. The connection is in autocommit mode, so
every statement reads the newest committed state: a read asked after a write returned sees that
write. A job must fetch what it needs before it returns and leave no transaction open; one it
left open anyway is rolled back, so it cannot pin an old snapshot for the jobs after it.

Reads that carry the same key in one batch run once and share the answer (or the error). Under
load that turns the many identical small reads of concurrent requests (catalog and service
revisions, say) into one query.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

from adapters.storage.batching import BatchedConnection, Job, Outcome

T = TypeVar("T")


class BatchReader:
    """Build it with `await BatchReader.open(connect)`."""

    def __init__(self, connection: BatchedConnection) -> None:
        self._connection = connection

    @classmethod
    async def open(cls, connect: Callable[[], sqlite3.Connection]) -> BatchReader:
        """`connect` opens the reader connection, in autocommit mode (`isolation_level=None`),
        on the reader thread, which then owns it."""
        return cls(await BatchedConnection.open(connect, _read_each, name="sqlite-reader"))

    async def read(self, job: Job[T], key: Hashable | None = None) -> T:
        """Run `job` in the next batch. Jobs of one batch that share a non-None `key` run once;
        give a key only to jobs that would all read the same thing."""
        return await self._connection.submit(job, key)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...]:
        """Every row of one statement. The same statement with the same parameters asked in one
        batch runs once; the rows come back as a tuple because its callers share it."""
        values = tuple(params)
        return await self.read(lambda db: tuple(db.execute(sql, values).fetchall()), (sql, values))

    async def close(self) -> None:
        """Finish every read queued so far, then stop the reader and its connection."""
        await self._connection.close()


# -- on the reader thread ------------------------------------------------------------------------


def _read_each(db: sqlite3.Connection, jobs: list[Job[Any]]) -> list[Outcome]:
    return [_read(db, job) for job in jobs]


def _read(db: sqlite3.Connection, job: Job[Any]) -> Outcome:
    try:
        return True, job(db)
    except Exception as exc:
        return False, exc
    finally:
        if db.in_transaction:
            with contextlib.suppress(Exception):
                db.execute("ROLLBACK")
