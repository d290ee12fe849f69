"""One SQLite connection on a thread of its own, fed jobs in batches from the event loop.

The group-commit writer and the batch reader are both built on `BatchedConnection`. Callers
queue a job (a plain function of the `sqlite3.Connection`). The first job queued while no batch
is on the thread schedules a flush with `call_soon`, so a batch holds every job queued in that
turn of the loop (up to `MAX_BATCH`); jobs queued while a batch is on the thread wait for the
next one. Batches therefore grow with load and add no delay when idle.

The hop to the thread, not SQLite, is the dear part of a small statement, so it is kept bare:
a plain thread blocking on a `SimpleQueue`, and one `call_soon_threadsafe` back with every
outcome of the batch. A batch costs two thread switches however many jobs it holds.

What a batch means is up to its owner's `run_batch`, which runs on the thread and returns one
outcome per job: the writer wraps the jobs in one transaction, the reader runs each on its own.

Jobs queued with the same non-None key that land in one batch run once, and every one of their
callers gets that outcome. A batch only forms after its callers asked, so the shared answer is
never older than any of their requests.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from attrs import define

from adapters.storage.faults import sqlite_fault
from adapters.storage.text import text_fault

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


# What goes over to the thread: one job per group of callers, and the groups to answer.
_Request = tuple[list[Job[Any]], list[list[_Pending]]]


class BatchedConnection:
    """Build it with `await BatchedConnection.open(connect, run_batch, name=...)`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        requests: queue.SimpleQueue[_Request | None],
        thread: threading.Thread,
    ) -> None:
        self._loop = loop
        self._requests = requests
        self._thread = thread
        self._queued: list[_Pending] = []
        self._in_flight = False
        self._flush_scheduled = False
        self._closed = False
        self._drained: asyncio.Future[None] | None = None

    @classmethod
    async def open(
        cls, connect: Callable[[], sqlite3.Connection], run_batch: RunBatch, *, name: str
    ) -> BatchedConnection:
        """`connect` runs on the new thread, which then owns the connection it returns."""
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[None] = loop.create_future()
        requests: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        connection: BatchedConnection | None = None

        def serve() -> None:
            try:
                db = connect()
            except BaseException as exc:
                loop.call_soon_threadsafe(_settle, opened, False, sqlite_fault(exc) or exc)
                return
            loop.call_soon_threadsafe(_settle, opened, True, None)
            try:
                while (request := requests.get()) is not None:
                    jobs, groups = request
                    try:
                        outcomes = run_batch(db, jobs)
                    except Exception as exc:
                        # run_batch reports job errors as outcomes; this is a fault of its own,
                        # and the callers must hear of it rather than wait forever.
                        outcomes = [(False, exc)] * len(jobs)
                    assert connection is not None
                    loop.call_soon_threadsafe(connection._finished, groups, outcomes)
            finally:
                db.close()

        thread = threading.Thread(target=serve, name=name, daemon=True)
        connection = cls(loop, requests, thread)
        thread.start()
        await opened
        return connection

    async def submit(self, job: Job[T], key: Hashable | None = None) -> T:
        """Run `job` in the next batch and return what it returned (or raise what it raised)."""
        if self._closed:
            raise RuntimeError("storage is closed")
        if key is not None:
            hash(key)  # an unhashable key fails its caller here, not the batch later
        future: asyncio.Future[T] = self._loop.create_future()
        self._queued.append(_Pending(job, key, future))
        if not self._in_flight and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return await future

    async def close(self) -> None:
        """Finish every job submitted so far, then close the connection and stop its thread."""
        if self._closed:
            return
        self._closed = True
        if self._in_flight or self._queued:
            self._drained = self._loop.create_future()
            await self._drained
        self._requests.put(None)
        await asyncio.to_thread(self._thread.join)

    # -- on the event loop -------------------------------------------------------------------

    def _flush(self) -> None:
        """Hand what is queued (callers that gave up left out) to the thread as one batch."""
        self._flush_scheduled = False
        batch = [pending for pending in self._queued[:MAX_BATCH] if not pending.future.done()]
        del self._queued[:MAX_BATCH]
        if not batch:
            self._after_batch()
            return
        groups = _by_key(batch)
        self._in_flight = True
        self._requests.put(([group[0].job for group in groups], groups))

    def _finished(self, groups: list[list[_Pending]], outcomes: list[Outcome]) -> None:
        self._in_flight = False
        for group, (ok, value) in zip(groups, outcomes, strict=True):
            for pending in group:
                # Storage trouble (busy, full, ...) reaches each caller as a fault of its own.
                _settle(pending.future, ok, value if ok else _fault(value))
        self._after_batch()

    def _after_batch(self) -> None:
        if self._queued:
            self._flush()
        elif not self._in_flight and self._drained is not None:
            _settle(self._drained, True, None)


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


def _fault(exc: BaseException) -> BaseException:
    return sqlite_fault(exc) or text_fault(exc) or exc


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
