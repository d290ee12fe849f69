"""Group commit over one SQLite writer connection that lives on a thread of its own.

Callers submit a job (a plain function of the `sqlite3` connection). The shared batching (see
`batching`) takes everything queued since the last commit and hands it to the writer thread in
a single step, which here means `BEGIN IMMEDIATE`, every job, `COMMIT`. Only then is each
caller's future resolved, so a returned call is durable. Jobs queue up while a commit is in
flight, which is what makes batches grow under load without any added delay when idle.

A job that raises gets its own exception and the rest of the batch still commits: if it had
already written rows, the batch is rolled back and every job of it rerun in a transaction of
its own, so its half-done writes never land.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from adapters.storage.batching import BatchedConnection, Job, Outcome

T = TypeVar("T")


class GroupCommitWriter:
    """Build it with `await GroupCommitWriter.open(connect)`."""

    def __init__(self, connection: BatchedConnection) -> None:
        self._connection = connection

    @classmethod
    async def open(cls, connect: Callable[[], sqlite3.Connection]) -> GroupCommitWriter:
        """`connect` opens the writer connection on the writer thread, which then owns it."""
        return cls(await BatchedConnection.open(connect, _commit, name="sqlite-writer"))

    async def submit(self, job: Job[T]) -> T:
        """Run `job` in the next group transaction; returns its result once committed."""
        return await self._connection.submit(job)

    async def close(self) -> None:
        """Finish every job submitted so far, then stop the writer and its connection."""
        await self._connection.close()


# -- on the writer thread ------------------------------------------------------------------------


def _commit(db: sqlite3.Connection, jobs: list[Job[Any]]) -> list[Outcome]:
    try:
        return _transaction(db, jobs)
    except _Tainted:
        # A job failed after it had written: the whole batch was rolled back. Rerunning each
        # job alone is safe (jobs hold their inputs and pure edits) and keeps it to the one.
        outcomes: list[Outcome] = []
        for job in jobs:
            try:
                outcomes.extend(_transaction(db, [job]))
            except _Tainted as tainted:
                outcomes.append((False, tainted.cause))
            except Exception as exc:
                outcomes.append((False, exc))
        return outcomes
    except Exception as exc:
        # The transaction itself failed (lock timeout, disk full, ...): nothing was written.
        return [(False, exc)] * len(jobs)


def _transaction(db: sqlite3.Connection, jobs: list[Job[Any]]) -> list[Outcome]:
    """Run the jobs in one transaction and commit. A job that raises without having
    changed a row just reports its error; one that raises after writing taints the batch."""
    outcomes: list[Outcome] = []
    try:
        db.execute("BEGIN IMMEDIATE")
        for job in jobs:
            before = db.total_changes
            try:
                value = job(db)
            except Exception as exc:
                if db.total_changes != before or not db.in_transaction:
                    raise _Tainted(exc) from exc
                outcomes.append((False, exc))
            else:
                outcomes.append((True, value))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(Exception):
                db.execute("ROLLBACK")
        raise
    return outcomes


class _Tainted(Exception):
    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause
