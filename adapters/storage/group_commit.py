"""Group commit over the one SQLite writer connection.

Callers submit a job (an async function of the connection). One writer task takes everything
queued since its last commit, runs the jobs one after another inside a single `BEGIN IMMEDIATE`
transaction, commits once, and only then resolves each caller's future, so a returned call is
durable. Jobs queue up while a commit is in flight, which is what makes batches grow under load
without any added delay when idle. A job that raises gets its own exception and the rest of the
batch still commits: if it had already written rows, the batch is rolled back and every job of
it rerun in a transaction of its own, so its half-done writes never land.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiosqlite
from attrs import define

T = TypeVar("T")
Job = Callable[[aiosqlite.Connection], Awaitable[T]]

MAX_BATCH = 256  # bounds one transaction's length, so early waiters are not held back forever


@define
class _Pending:
    job: Job[Any]
    future: asyncio.Future[Any]


class GroupCommitWriter:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._closed = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sqlite-writer")

    async def submit(self, job: Job[T]) -> T:
        """Run `job` in the next group transaction; returns its result once committed."""
        if self._closed:
            raise RuntimeError("storage is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(job, future))
        return await future

    async def close(self) -> None:
        """Finish every job submitted so far, then stop the writer task."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        await self._task

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[_Pending] = []
            item = await self._queue.get()
            while True:
                if item is None:
                    stopping = True
                elif not item.future.done():  # a cancelled caller no longer wants it run
                    batch.append(item)
                if stopping or len(batch) >= MAX_BATCH or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            if batch:
                await self._commit(batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            outcomes = await self._transaction(batch)
        except _Tainted:
            # A job failed after it had written: the whole batch was rolled back. Rerunning each
            # job alone is safe (jobs hold their inputs and pure edits) and keeps it to the one.
            outcomes = []
            for pending in batch:
                try:
                    outcomes.extend(await self._transaction([pending]))
                except _Tainted as tainted:
                    outcomes.append((pending, False, tainted.cause))
                except Exception as exc:
                    outcomes.append((pending, False, exc))
        except Exception as exc:
            # The transaction itself failed (lock timeout, disk full, ...): nothing was written.
            outcomes = [(pending, False, exc) for pending in batch]
        for pending, ok, value in outcomes:
            _settle(pending.future, ok, value)

    async def _transaction(self, batch: list[_Pending]) -> list[tuple[_Pending, bool, Any]]:
        """Run the jobs in one transaction and commit. A job that raises without having
        changed a row just reports its error (no savepoint needed: that saves two round trips
        to the connection's thread per job); one that raises after writing taints the batch."""
        db = self._db
        outcomes: list[tuple[_Pending, bool, Any]] = []
        try:
            await db.execute("BEGIN IMMEDIATE")
            for pending in batch:
                before = db.total_changes
                try:
                    value = await pending.job(db)
                except Exception as exc:
                    if db.total_changes != before or not db.in_transaction:
                        raise _Tainted(exc) from exc
                    outcomes.append((pending, False, exc))
                else:
                    outcomes.append((pending, True, value))
            await db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                with contextlib.suppress(Exception):
                    await db.execute("ROLLBACK")
            raise
        return outcomes


class _Tainted(Exception):
    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
