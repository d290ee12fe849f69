"""Group commit over the one SQLite writer connection.

Callers submit a job (an async function of the connection). One writer task takes everything
queued since its last commit, runs the jobs one after another inside a single `BEGIN IMMEDIATE`
transaction, commits once, and only then resolves each caller's future, so a returned call is
durable. Jobs queue up while a commit is in flight, which is what makes batches grow under load
without any added delay when idle. Each job runs under its own SAVEPOINT: a job that raises is
rolled back alone and its caller gets the exception; the rest of the batch still commits.
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
        db = self._db
        outcomes: list[tuple[_Pending, bool, Any]] = []
        try:
            await db.execute("BEGIN IMMEDIATE")
            for pending in batch:
                await db.execute("SAVEPOINT job")
                try:
                    value = await pending.job(db)
                except Exception as exc:
                    await db.execute("ROLLBACK TO job")
                    await db.execute("RELEASE job")
                    outcomes.append((pending, False, exc))
                else:
                    await db.execute("RELEASE job")
                    outcomes.append((pending, True, value))
            await db.execute("COMMIT")
        except Exception as exc:
            # The transaction itself failed (lock timeout, disk full, ...): nothing was written.
            if db.in_transaction:
                with contextlib.suppress(Exception):
                    await db.execute("ROLLBACK")
            for pending in batch:
                _settle(pending.future, False, exc)
            return
        for pending, ok, value in outcomes:
            _settle(pending.future, ok, value)


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
