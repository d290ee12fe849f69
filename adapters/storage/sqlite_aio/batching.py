"""The batching of `adapters/storage/batching.py`, `group_commit.py` and `batch_reader.py`, over
aiosqlite connections instead of plain threads: the comparison the design card asks for.

Batches form by the same rules: the first job queued while no batch runs schedules a flush with
`call_soon`, a batch takes every job queued in that turn of the loop (up to `MAX_BATCH`), and
jobs with the same non-None key in one batch run once. What differs is what a batch costs:
aiosqlite owns one thread per connection and every awaited call is one hop to it and back, so
a batch costs a hop per statement (plus `BEGIN` and `COMMIT` for the writer), not one per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, TypeVar

import aiosqlite

from adapters.storage.batching import MAX_BATCH, Outcome, _by_key, _Pending, _settle

T = TypeVar("T")
AioJob = Callable[[aiosqlite.Connection], Awaitable[T]]
RunBatch = Callable[[aiosqlite.Connection, list[AioJob[Any]]], Awaitable[list[Outcome]]]


class AioBatched:
    """One aiosqlite connection, fed jobs (async functions of it) in batches."""

    def __init__(self, db: aiosqlite.Connection, run_batch: RunBatch) -> None:
        self._db = db
        self._run_batch = run_batch
        self._loop = asyncio.get_running_loop()
        self._queued: list[_Pending] = []
        self._in_flight = False
        self._flush_scheduled = False
        self._closed = False
        self._drained: asyncio.Future[None] | None = None
        self._batch: asyncio.Task[None] | None = None

    async def submit(self, job: AioJob[T], key: Hashable | None = None) -> T:
        if self._closed:
            raise RuntimeError("storage is closed")
        if key is not None:
            hash(key)  # an unhashable key fails its caller here, not the batch later
        future: asyncio.Future[T] = self._loop.create_future()
        self._queued.append(_Pending(job, key, future))  # type: ignore[arg-type]
        if not self._in_flight and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return await future

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._in_flight or self._queued:
            self._drained = self._loop.create_future()
            await self._drained
        await self._db.close()

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch = [pending for pending in self._queued[:MAX_BATCH] if not pending.future.done()]
        del self._queued[:MAX_BATCH]
        if not batch:
            self._after_batch()
            return
        self._in_flight = True
        self._batch = self._loop.create_task(self._run(_by_key(batch)))

    async def _run(self, groups: list[list[_Pending]]) -> None:
        jobs: list[AioJob[Any]] = [group[0].job for group in groups]  # type: ignore[misc]
        try:
            outcomes = await self._run_batch(self._db, jobs)
        except Exception as exc:
            outcomes = [(False, exc)] * len(jobs)
        self._in_flight = False
        for group, (ok, value) in zip(groups, outcomes, strict=True):
            for pending in group:
                _settle(pending.future, ok, value)
        self._after_batch()

    def _after_batch(self) -> None:
        if self._queued:
            self._flush()
        elif not self._in_flight and self._drained is not None:
            _settle(self._drained, True, None)


# -- the reader: each job on its own, in autocommit ----------------------------------------------


async def _read_each(db: aiosqlite.Connection, jobs: list[AioJob[Any]]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for job in jobs:
        try:
            outcomes.append((True, await job(db)))
        except Exception as exc:
            outcomes.append((False, exc))
    return outcomes


class AioReader:
    """`BatchReader.fetchall`: the same statement with the same parameters in one batch runs once."""

    def __init__(self, batched: AioBatched) -> None:
        self._batched = batched

    @classmethod
    async def open(cls, db: aiosqlite.Connection) -> AioReader:
        return cls(AioBatched(db, _read_each))

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...]:
        values = tuple(params)

        async def job(db: aiosqlite.Connection) -> tuple[Any, ...]:
            return tuple(await db.execute_fetchall(sql, values))

        return await self._batched.submit(job, (sql, values))

    async def close(self) -> None:
        await self._batched.close()


# -- the writer: one transaction per batch ------------------------------------------------------


class _Tainted(Exception):
    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


async def _transaction(db: aiosqlite.Connection, jobs: list[AioJob[Any]]) -> list[Outcome]:
    """As `group_commit._transaction`: a job that raised after writing taints the batch."""
    outcomes: list[Outcome] = []
    try:
        await db.execute("BEGIN IMMEDIATE")
        for job in jobs:
            before = db.total_changes
            try:
                value = await job(db)
            except Exception as exc:
                if db.total_changes != before or not db.in_transaction:
                    raise _Tainted(exc) from exc
                outcomes.append((False, exc))
            else:
                outcomes.append((True, value))
        await db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(Exception):
                await db.execute("ROLLBACK")
        raise
    return outcomes


async def _commit(db: aiosqlite.Connection, jobs: list[AioJob[Any]]) -> list[Outcome]:
    try:
        return await _transaction(db, jobs)
    except _Tainted:
        # Rolled back as a whole: rerun each job alone, as the hand-written writer does.
        outcomes: list[Outcome] = []
        for job in jobs:
            try:
                outcomes.extend(await _transaction(db, [job]))
            except _Tainted as tainted:
                outcomes.append((False, tainted.cause))
            except Exception as exc:
                outcomes.append((False, exc))
        return outcomes
    except Exception as exc:
        # The transaction itself failed (lock timeout, disk full, ...): nothing was written.
        return [(False, exc)] * len(jobs)


class AioWriter:
    """`GroupCommitWriter.submit` for async jobs: every job of a batch, then one commit."""

    def __init__(self, batched: AioBatched) -> None:
        self._batched = batched

    @classmethod
    async def open(cls, db: aiosqlite.Connection) -> AioWriter:
        return cls(AioBatched(db, _commit))

    async def submit(self, job: AioJob[T]) -> T:
        return await self._batched.submit(job)

    async def close(self) -> None:
        await self._batched.close()
