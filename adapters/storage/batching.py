"""One SQLite connection on a thread of its own, fed jobs in batches from the event loop.

The group-commit writer and the batch reader are both built on `BatchedConnection`. Callers
queue a job (a plain function of the `sqlite3.Connection`); one task takes everything queued so
far, up to `MAX_BATCH`, hands the whole batch to the connection's thread in a single
`run_in_executor` call, and then settles each caller's future. Jobs queue up while a batch is on
the thread, so batches grow with load and add no delay when idle.

The thread hop, not SQLite, is the dear part of a small statement: a batch costs two thread
switches however many jobs it holds.

What a batch means is up to its owner's `run_batch`, which runs on the thread and returns one
outcome per job: the writer wraps the jobs in one transaction, the reader runs each on its own.

Jobs queued with the same non-None key that land in one batch run once, and every one of their
callers gets that outcome. A batch only forms after its callers asked, so the shared answer is
never older than any of their requests.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from attrs import define

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]
Outcome = tuple[bool, Any]  # (True, the job's value) or (False, the exception it raised)
RunBatch = Callable[[sqlite3.Connection, list[Job[Any]]], list[Outcome]]

MAX_BATCH = 256  # bounds one batch's length, so early waiters are not held back forever


@define
class _Pending:
    job: Job[Any]
    key: Hashable | None
    future: asyncio.Future[Any]


class BatchedConnection:
    """Build it with `await BatchedConnection.open(connect, run_batch, name=...)`."""

    def __init__(
        self, thread: ThreadPoolExecutor, db: sqlite3.Connection, run_batch: RunBatch, name: str
    ) -> None:
        self._thread = thread
        self._db = db
        self._run_batch = run_batch
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._closed = False
        self._task = asyncio.get_running_loop().create_task(self._serve(), name=name)

    @classmethod
    async def open(
        cls, connect: Callable[[], sqlite3.Connection], run_batch: RunBatch, *, name: str
    ) -> BatchedConnection:
        """`connect` runs on the new thread, which then owns the connection it returns."""
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        try:
            db = await asyncio.get_running_loop().run_in_executor(thread, connect)
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return cls(thread, db, run_batch, name)

    async def submit(self, job: Job[T], key: Hashable | None = None) -> T:
        """Run `job` in the next batch and return what it returned (or raise what it raised)."""
        if self._closed:
            raise RuntimeError("storage is closed")
        if key is not None:
            hash(key)  # an unhashable key fails its caller here, not the batching task later
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(job, key, future))
        return await future

    async def close(self) -> None:
        """Finish every job submitted so far, then close the connection and stop its thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        await self._task
        await asyncio.get_running_loop().run_in_executor(self._thread, self._db.close)
        self._thread.shutdown(wait=True)

    async def _serve(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = await self._next_batch()
            if batch:
                await self._execute(batch)

    async def _next_batch(self) -> tuple[list[_Pending], bool]:
        """Wait for one job, then take whatever else is already queued; True once told to stop."""
        batch: list[_Pending] = []
        item = await self._queue.get()
        while True:
            if item is None:
                return batch, True
            if not item.future.done():  # a cancelled caller no longer wants it run
                batch.append(item)
            if len(batch) >= MAX_BATCH or self._queue.empty():
                return batch, False
            item = self._queue.get_nowait()

    async def _execute(self, batch: list[_Pending]) -> None:
        groups = _by_key(batch)
        jobs = [group[0].job for group in groups]
        try:
            outcomes = await asyncio.get_running_loop().run_in_executor(
                self._thread, self._run_batch, self._db, jobs
            )
        except Exception as exc:
            # run_batch reports job errors as outcomes; this is a fault of its own, and the
            # callers must hear of it rather than wait forever.
            outcomes = [(False, exc)] * len(jobs)
        for group, (ok, value) in zip(groups, outcomes, strict=True):
            for pending in group:
                _settle(pending.future, ok, value)


def _by_key(batch: list[_Pending]) -> list[list[_Pending]]:
    """The batch's callers grouped so each group runs one job: a keyless job is a group alone."""
    groups: list[list[_Pending]] = []
    keyed: dict[Hashable, list[_Pending]] = {}
    for pending in batch:
        if pending.key is None:
            groups.append([pending])
        elif pending.key in keyed:
            keyed[pending.key].append(pending)
        else:
            keyed[pending.key] = [pending]
            groups.append(keyed[pending.key])
    return groups


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
