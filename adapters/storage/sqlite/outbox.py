"""The callback outbox on SQLite (`ports.callbacks.CallbackOutbox`), and the two steps every
execution save takes inside its writer job: `prior` before the write, `keep` after it, so a
delivery commits in the very transaction of the state it tells.

One server per SQLite file: its sender is the only claimer, and a lease only guards against
an attempt of a stopped run of the same server being recorded late.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from adapters.storage.batch_reader import BatchReader
from adapters.storage.group_commit import GroupCommitWriter
from adapters.storage.outbox import Prior, delivery_from_row, looks_at, not_stored, owed
from adapters.storage.sqlite.sql import all_now, changed_now, one_now, read_all, read_one
from core.callbacks import Attempt, Delivery
from core.model import Execution, ExecutionState

COLUMNS = (
    "id, execution_id, url, payload, created_at, next_at, attempts, delivered_at, gave_up_at, "
    "last_error"
)
_INSERT = (
    f"INSERT INTO callback_deliveries ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 0, NULL, NULL, NULL)"
)
_PRIOR = "SELECT state, callback_url, service FROM executions WHERE id = ?"
_OWED = "delivered_at IS NULL AND gave_up_at IS NULL"  # the partial index's condition
_CLAIM = (
    "UPDATE callback_deliveries SET lease_owner = ?, lease_until = ? WHERE id IN ("
    f"SELECT id FROM callback_deliveries WHERE {_OWED} AND next_at <= ? "
    "AND (lease_until IS NULL OR lease_until < ?) ORDER BY next_at, id LIMIT ?) "
    f"RETURNING {COLUMNS}"
)
_SETTLE = (
    "UPDATE callback_deliveries SET attempts = attempts + 1, lease_owner = NULL, "
    "lease_until = NULL, delivered_at = ?, last_error = COALESCE(?, last_error), "
    "next_at = COALESCE(?, next_at), gave_up_at = ? WHERE id = ? AND lease_owner = ?"
)


# -- inside an execution save's writer job ----------------------------------------------------


def prior(db: sqlite3.Connection, execution: Execution) -> Prior | None:
    """Before the write: the stored row as `keep` needs it; None when the save tells nothing."""
    if not looks_at(execution):
        return None
    row = one_now(db, _PRIOR, (execution.execution_id,))
    return not_stored(execution) if row is None else Prior(ExecutionState(row[0]), row[1], row[2])


def keep(db: sqlite3.Connection, execution: Execution, before: Prior | None) -> None:
    """After a successful write: store the delivery it owes, if any."""
    delivery = None if before is None else owed(execution, before)
    if delivery is not None:
        db.execute(_INSERT, _params(delivery))


def _params(d: Delivery) -> tuple[Any, ...]:
    return (d.delivery_id, d.execution_id, d.url, d.payload, d.created_at, d.next_at)


class SqliteOutbox:
    def __init__(self, reader: BatchReader, writer: GroupCommitWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def next_due(self) -> float | None:
        row = await read_one(
            self._reader,
            "SELECT MIN(MAX(next_at, COALESCE(lease_until, next_at))) "
            f"FROM callback_deliveries WHERE {_OWED}",
        )
        return None if row is None else row[0]

    async def claim(self, owner: str, *, limit: int, lease: float, now: float) -> list[Delivery]:
        def job(db: sqlite3.Connection) -> list[Delivery]:
            found = all_now(db, _CLAIM, (owner, now + lease, now, now, max(0, limit)))
            return [delivery_from_row(row) for row in found]

        claimed = await self._writer.submit(job)
        return sorted(claimed, key=lambda d: (d.next_at, d.delivery_id))

    async def settle(self, owner: str, delivery_id: str, attempt: Attempt) -> bool:
        delivered = attempt.at if attempt.error is None else None
        gave_up = attempt.at if attempt.error is not None and attempt.next_at is None else None
        params = (delivered, attempt.error, attempt.next_at, gave_up, delivery_id, owner)

        def job(db: sqlite3.Connection) -> bool:
            return changed_now(db, _SETTLE, params) > 0

        return await self._writer.submit(job)

    async def release(self, owner: str) -> None:
        sql = (
            "UPDATE callback_deliveries SET lease_owner = NULL, lease_until = NULL "
            "WHERE lease_owner = ?"
        )

        def job(db: sqlite3.Connection) -> None:
            changed_now(db, sql, (owner,))

        await self._writer.submit(job)

    async def deliveries(self, execution_id: str) -> list[Delivery]:
        found = await read_all(
            self._reader,
            f"SELECT {COLUMNS} FROM callback_deliveries WHERE execution_id = ? "
            "ORDER BY created_at, id",
            (execution_id,),
        )
        return [delivery_from_row(row) for row in found]
