"""The callback outbox on PostgreSQL (`ports.callbacks.CallbackOutbox`), and the two steps every
execution save takes inside its transaction: `prior` before the write, `keep` after it, so a
delivery commits with the state it tells.

Replicas share the outbox: a claim takes due rows `FOR UPDATE SKIP LOCKED` and leases them, so
concurrent claimers get different deliveries and each attempt is made by one replica.
"""

from __future__ import annotations

import asyncpg

from adapters.storage.outbox import Prior, delivery_from_row, looks_at, not_stored, owed
from adapters.storage.postgres.guard import GuardedPool
from core.callbacks import Attempt, Delivery
from core.model import Execution, ExecutionState

# The payload is JSON text sent as it was written (a `json` column keeps it byte for byte):
# it goes in and out as text, past the pool's JSON codec.
COLUMNS = (
    "id, execution_id, url, payload::text, created_at, next_at, attempts, delivered_at, "
    "gave_up_at, last_error"
)
_INSERT = (
    "INSERT INTO callback_deliveries (id, execution_id, url, payload, created_at, next_at) "
    "VALUES ($1, $2, $3, $4::text::json, $5, $6)"
)
# The row lock orders this read and the save's write against a concurrent save of the row.
_PRIOR = "SELECT state, callback_url, service FROM executions WHERE id = $1 FOR UPDATE"
_OWED = "delivered_at IS NULL AND gave_up_at IS NULL"  # the partial index's condition
_CLAIM = (
    "UPDATE callback_deliveries SET lease_owner = $1, lease_until = $2 WHERE id IN ("
    f"SELECT id FROM callback_deliveries WHERE {_OWED} AND next_at <= $3 "
    "AND (lease_until IS NULL OR lease_until < $3) ORDER BY next_at, id LIMIT $4 "
    f"FOR UPDATE SKIP LOCKED) RETURNING {COLUMNS}"
)
_SETTLE = (
    "UPDATE callback_deliveries SET attempts = attempts + 1, lease_owner = NULL, "
    "lease_until = NULL, delivered_at = $1, last_error = COALESCE($2, last_error), "
    "next_at = COALESCE($3, next_at), gave_up_at = $4 WHERE id = $5 AND lease_owner = $6"
)


# -- inside an execution save's transaction ---------------------------------------------------


async def prior(conn: asyncpg.Connection, execution: Execution) -> Prior | None:
    """Before the write: the stored row as `keep` needs it; None when the save tells nothing."""
    if not looks_at(execution):
        return None
    row = await conn.fetchrow(_PRIOR, execution.execution_id)
    return not_stored(execution) if row is None else Prior(ExecutionState(row[0]), row[1], row[2])


async def keep(conn: asyncpg.Connection, execution: Execution, before: Prior | None) -> None:
    """After a successful write: store the delivery it owes, if any."""
    d = None if before is None else owed(execution, before)
    if d is not None:
        await conn.execute(
            _INSERT, d.delivery_id, d.execution_id, d.url, d.payload, d.created_at, d.next_at
        )


class PostgresOutbox:
    def __init__(self, pool: GuardedPool) -> None:
        self._pool = pool

    async def next_due(self) -> float | None:
        value = await self._pool.fetchval(
            "SELECT MIN(GREATEST(next_at, COALESCE(lease_until, next_at))) "
            f"FROM callback_deliveries WHERE {_OWED}"
        )
        return None if value is None else float(value)

    async def claim(self, owner: str, *, limit: int, lease: float, now: float) -> list[Delivery]:
        found = await self._pool.fetch(_CLAIM, owner, now + lease, now, max(0, limit))
        claimed = [delivery_from_row(tuple(row)) for row in found]
        return sorted(claimed, key=lambda d: (d.next_at, d.delivery_id))

    async def settle(self, owner: str, delivery_id: str, attempt: Attempt) -> bool:
        delivered = attempt.at if attempt.error is None else None
        gave_up = attempt.at if attempt.error is not None and attempt.next_at is None else None
        status = await self._pool.execute(
            _SETTLE, delivered, attempt.error, attempt.next_at, gave_up, delivery_id, owner
        )
        return status.endswith(" 1")

    async def release(self, owner: str) -> None:
        await self._pool.execute(
            "UPDATE callback_deliveries SET lease_owner = NULL, lease_until = NULL "
            "WHERE lease_owner = $1",
            owner,
        )

    async def deliveries(self, execution_id: str) -> list[Delivery]:
        found = await self._pool.fetch(
            f"SELECT {COLUMNS} FROM callback_deliveries WHERE execution_id = $1 "
            "ORDER BY created_at, id",
            execution_id,
        )
        return [delivery_from_row(tuple(row)) for row in found]
