"""Statements more than one PostgreSQL store uses."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import asyncpg

from adapters.storage.pg_signals import notifying
from adapters.storage.postgres.rows import EVENT_COLUMNS, EXECUTION_COLUMNS, event_values
from core.errors import AlreadyExists
from core.model import ExecutionEvent

Clock = Callable[[], float]

LOCK_REVISION = "SELECT value FROM revisions WHERE key = $1 FOR UPDATE"
BUMP = "UPDATE revisions SET value = value + 1 WHERE key = $1"
REVISION = "SELECT value FROM revisions WHERE key = $1"

INSERT_EXECUTION = (
    f"INSERT INTO executions ({EXECUTION_COLUMNS}) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
)
INSERT_EVENT = f"INSERT INTO execution_events ({EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
# An execution write ends with this so that `notifying` can tell its listeners (see `pg_signals`).
WRITTEN = " RETURNING id, state, lease_owner"
CREATE = notifying(INSERT_EXECUTION + WRITTEN)


async def insert_events(conn: asyncpg.Connection, events: Sequence[ExecutionEvent]) -> None:
    """Inside the caller's transaction. A seq taken already raises asyncpg's unique violation,
    which the caller turns into `duplicate_event()` once the transaction has rolled back."""
    if events:
        await conn.executemany(INSERT_EVENT, [event_values(e) for e in events])


def duplicate_event() -> AlreadyExists:
    return AlreadyExists("an event with this execution_id and seq already exists")


def execution_ids(events: Sequence[ExecutionEvent]) -> list[str]:
    return list(dict.fromkeys(event.execution_id for event in events))
