"""The batch reader: shared keyed reads, one caller's error kept to it, fresh snapshots, close."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from adapters.storage.batch_reader import BatchReader
from adapters.storage.group_commit import GroupCommitWriter

BOUND = 10.0  # seconds; a hung reader fails the test instead of the run


def connect(path: Path) -> Callable[[], sqlite3.Connection]:
    def open_connection() -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode = WAL")
        return db

    return open_connection


@pytest.fixture
def path(tmp_path: Path) -> Path:
    file = tmp_path / "reader.db"
    db = sqlite3.connect(file, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("CREATE TABLE t (n INTEGER)")
    finally:
        db.close()
    return file


@pytest.fixture
async def reader(path: Path) -> AsyncIterator[BatchReader]:
    opened = await BatchReader.open(connect(path))
    try:
        yield opened
    finally:
        await opened.close()


class Counted:
    """A job that counts its runs (on the reader thread) and answers a fixed value."""

    def __init__(self, value: Any = None, error: Exception | None = None) -> None:
        self.value = value
        self.error = error
        self.runs = 0

    def __call__(self, db: sqlite3.Connection) -> Any:
        self.runs += 1
        db.execute("SELECT 1").fetchall()
        if self.error is not None:
            raise self.error
        return self.value


@asynccontextmanager
async def one_batch(reader: BatchReader) -> AsyncIterator[None]:
    """Hold the reader thread busy, so the reads started inside the block queue up and then run
    as one batch once the block ends."""
    started, release = threading.Event(), threading.Event()

    def hold(db: sqlite3.Connection) -> None:
        started.set()
        release.wait(BOUND)

    holding = asyncio.ensure_future(reader.read(hold))
    await asyncio.wait_for(asyncio.to_thread(started.wait, BOUND), BOUND)
    try:
        yield
        await asyncio.sleep(0)  # let the reads started in the block reach the queue
    finally:
        release.set()
        await asyncio.wait_for(holding, BOUND)


def started(reads: list[Awaitable[Any]]) -> list[asyncio.Future[Any]]:
    return [asyncio.ensure_future(read) for read in reads]


async def outcomes(futures: list[asyncio.Future[Any]]) -> list[Any]:
    return await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), BOUND)


async def test_reads_with_one_key_in_a_batch_run_once(reader):
    job = Counted("rev-7")
    async with one_batch(reader):
        reads = started([reader.read(job, key="catalog_revision") for _ in range(16)])
    assert await outcomes(reads) == ["rev-7"] * 16
    assert job.runs == 1


async def test_distinct_keys_and_keyless_reads_run_separately(reader):
    a, b, keyless = Counted("a"), Counted("b"), Counted("none")
    async with one_batch(reader):
        reads = started(
            [reader.read(a, key="a"), reader.read(b, key="b")]
            + [reader.read(keyless) for _ in range(3)]
            + [reader.read(a, key="a")]
        )
    assert await outcomes(reads) == ["a", "b", "none", "none", "none", "a"]
    assert (a.runs, b.runs, keyless.runs) == (1, 1, 3)


async def test_same_key_in_later_batches_runs_again(reader):
    job = Counted(1)
    assert await reader.read(job, key="k") == 1
    assert await reader.read(job, key="k") == 1
    assert job.runs == 2


async def test_an_error_reaches_only_the_callers_of_its_job(reader):
    broken = Counted(error=LookupError("no such row"))
    fine = Counted("fine")
    async with one_batch(reader):
        reads = started(
            [
                reader.read(broken, key="bad"),
                reader.read(fine, key="good"),
                reader.read(broken, key="bad"),
                reader.read(fine),
            ]
        )
    first, good, second, keyless = await outcomes(reads)
    assert isinstance(first, LookupError) and second is first
    assert (good, keyless) == ("fine", "fine")
    assert broken.runs == 1


async def test_an_unhashable_key_fails_its_caller_only(reader):
    with pytest.raises(TypeError):
        await reader.read(Counted(), key=["not", "hashable"])
    assert await reader.read(Counted("still here"), key="k") == "still here"


async def test_a_failed_statement_leaves_the_reader_usable(reader):
    with pytest.raises(sqlite3.OperationalError):
        await reader.fetchall("SELECT * FROM missing")
    assert await reader.fetchall("SELECT 1") == ((1,),)


async def test_fetchall_tells_statements_apart_by_their_parameters(reader):
    async with one_batch(reader):
        reads = started(
            [reader.fetchall("SELECT ?", (1,)) for _ in range(4)]
            + [reader.fetchall("SELECT ?", (2,))]
        )
    assert await outcomes(reads) == [((1,),)] * 4 + [((2,),)]


async def test_a_read_after_a_committed_write_sees_it(reader, path):
    writer = await GroupCommitWriter.open(connect(path))
    try:
        for n in range(1, 6):
            await writer.submit(lambda db, n=n: db.execute("INSERT INTO t VALUES (?)", (n,)))
            assert await reader.fetchall("SELECT MAX(n) FROM t") == ((n,),)
    finally:
        await writer.close()


async def test_a_transaction_left_open_does_not_pin_an_old_snapshot(reader, path):
    def careless(db: sqlite3.Connection) -> Any:
        db.execute("BEGIN")
        return db.execute("SELECT COUNT(*) FROM t").fetchall()

    assert await reader.read(careless) == [(0,)]
    writer = await GroupCommitWriter.open(connect(path))
    try:
        await writer.submit(lambda db: db.execute("INSERT INTO t VALUES (1)"))
    finally:
        await writer.close()
    assert await reader.fetchall("SELECT COUNT(*) FROM t") == ((1,),)


async def test_a_cancelled_read_is_not_run(reader):
    job = Counted("unwanted")
    async with one_batch(reader):
        [read] = started([reader.read(job)])
        await asyncio.sleep(0)
        read.cancel()
    await asyncio.wait_for(reader.fetchall("SELECT 1"), BOUND)
    assert read.cancelled()
    assert job.runs == 0


async def test_close_finishes_queued_reads_and_refuses_new_ones(path):
    reader = await BatchReader.open(connect(path))
    job = Counted("done")
    async with one_batch(reader):
        reads = started([reader.read(job) for _ in range(5)])
        await asyncio.sleep(0)
        closing = asyncio.ensure_future(reader.close())
        await asyncio.sleep(0)
    await asyncio.wait_for(closing, BOUND)
    assert await outcomes(reads) == ["done"] * 5
    with pytest.raises(RuntimeError):
        await reader.read(job)
