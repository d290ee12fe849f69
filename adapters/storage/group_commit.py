"""Group commit over one SQLite writer connection that lives on a thread of its own.

Callers submit a job (a plain function of the `sqlite3` connection). One writer task takes
everything queued since its last commit and hands the whole batch to the writer thread in a
single step: `BEGIN IMMEDIATE`, every job, `COMMIT`. Only then is each caller's future
resolved, so a returned call is durable. Jobs queue up while a commit is in flight, which is
what makes batches grow under load without any added delay when idle.

Running the batch as one call on the thread (rather than one hop to a connection thread per
statement) is what keeps a write cheap: a batch costs two thread switches however many
statements its jobs run.

A job that raises gets its own exception and the rest of the batch still commits: if it had
already written rows, the batch is rolled back and every job of it rerun in a transaction of
its own, so its half-done writes never land.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from attrs import define

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]

MAX_BATCH = 256  # bounds one transaction's length, so early waiters are not held back forever


@define
class _Pending:
    job: Job[Any]
    future: asyncio.Future[Any]


class GroupCommitWriter:
    """Build it with `await GroupCommitWriter.open(connect)`."""

    def __init__(self, thread: ThreadPoolExecutor, db: sqlite3.Connection) -> None:
        self._thread = thread
        self._db = db
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._closed = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sqlite-writer")

    @classmethod
    async def open(cls, connect: Callable[[], sqlite3.Connection]) -> GroupCommitWriter:
        """`connect` opens the writer connection on the writer thread, which then owns it."""
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        try:
            db = await asyncio.get_running_loop().run_in_executor(thread, connect)
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return cls(thread, db)

    async def submit(self, job: Job[T]) -> T:
        """Run `job` in the next group transaction; returns its result once committed."""
        if self._closed:
            raise RuntimeError("storage is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(job, future))
        return await future

    async def close(self) -> None:
        """Finish every job submitted so far, then stop the writer and its connection."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        await self._task
        await asyncio.get_running_loop().run_in_executor(self._thread, self._db.close)
        self._thread.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
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
                jobs = [pending.job for pending in batch]
                outcomes = await loop.run_in_executor(self._thread, self._commit, jobs)
                for pending, (ok, value) in zip(batch, outcomes, strict=True):
                    _settle(pending.future, ok, value)

    # -- on the writer thread ----------------------------------------------------------------

    def _commit(self, jobs: list[Job[Any]]) -> list[tuple[bool, Any]]:
        try:
            return self._transaction(jobs)
        except _Tainted:
            # A job failed after it had written: the whole batch was rolled back. Rerunning each
            # job alone is safe (jobs hold their inputs and pure edits) and keeps it to the one.
            outcomes: list[tuple[bool, Any]] = []
            for job in jobs:
                try:
                    outcomes.extend(self._transaction([job]))
                except _Tainted as tainted:
                    outcomes.append((False, tainted.cause))
                except Exception as exc:
                    outcomes.append((False, exc))
            return outcomes
        except Exception as exc:
            # The transaction itself failed (lock timeout, disk full, ...): nothing was written.
            return [(False, exc)] * len(jobs)

    def _transaction(self, jobs: list[Job[Any]]) -> list[tuple[bool, Any]]:
        """Run the jobs in one transaction and commit. A job that raises without having
        changed a row just reports its error; one that raises after writing taints the batch."""
        db = self._db
        outcomes: list[tuple[bool, Any]] = []
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


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
