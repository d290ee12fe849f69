"""What the SQLite stores share: the statements used by more than one, and the helpers that
run reads on the batch reader or inside a writer job."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from adapters.storage.batch_reader import BatchReader
from adapters.storage.faults import about
from adapters.storage.group_commit import GroupCommitWriter
from adapters.storage.sqlite import rows
from core.errors import AlreadyExists, StorageUnavailable

Clock = Callable[[], float]
T = TypeVar("T")

BUMP = "UPDATE meta SET value = value + 1 WHERE key = ?"
INSERT_EXECUTION = (
    f"INSERT INTO executions ({rows.EXECUTION_COLUMNS}) VALUES "
    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_EVENTS = f"INSERT INTO execution_events ({rows.EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"


def marks(values: Sequence[Any]) -> str:
    """`?, ?, ...`: one placeholder per value, for `IN (...)`."""
    return ", ".join("?" * len(values))


# A read is one reader job that fetches everything before it returns: a cursor left open would
# keep its read transaction, and so its snapshot, alive, and a commit made meanwhile would stay
# unseen by the reads after it.


async def read_all(reader: BatchReader, sql: str, params: Sequence[Any] = ()) -> Sequence[Any]:
    return await reader.fetchall(sql, params)


async def read_one(reader: BatchReader, sql: str, params: Sequence[Any] = ()) -> Any:
    found = await reader.fetchall(sql, params)
    return found[0] if found else None


# Inside a writer job: on the writer thread, within its transaction.


def all_now(db: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    return db.execute(sql, params).fetchall()


def one_now(db: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    return db.execute(sql, params).fetchone()


def changed_now(db: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> int:
    """How many rows one write changed; its cursor is closed before this returns."""
    cursor = db.execute(sql, params)
    try:
        return cursor.rowcount
    finally:
        cursor.close()


def insert_events(db: sqlite3.Connection, event_params: list[tuple[Any, ...]]) -> None:
    if not event_params:
        return
    try:
        db.executemany(INSERT_EVENTS, event_params)
    except sqlite3.IntegrityError:
        raise AlreadyExists("an event with this execution_id and seq already exists") from None


async def write_for(
    writer: GroupCommitWriter, job: Callable[[sqlite3.Connection], T], execution_id: str
) -> T:
    """`writer.submit(job)` for a write of one execution: storage trouble names it."""
    try:
        return await writer.submit(job)
    except StorageUnavailable as fault:
        raise about(fault, execution_id) from fault.__cause__
