"""Leases of worker processes on PostgreSQL executions (`ports.executions.Leases`).

Each operation is one statement or one transaction on the shared pool; row locks order a lease
check against a concurrent claim or takeover. A claim or renewal notifies nothing; a release
tells claimers, a guarded write tells the execution's listeners (see `pg_signals`).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from adapters.storage import text
from adapters.storage.faults import for_execution
from adapters.storage.pg_signals import NOTIFY_CHANGED, notifying
from adapters.storage.postgres import outbox, rows
from adapters.storage.postgres.guard import GuardedPool
from adapters.storage.postgres.rows import EXECUTION_COLUMNS, STATE_UPDATE, affected
from adapters.storage.postgres.sql import WRITTEN, duplicate_event, insert_events
from adapters.storage.states import LEASABLE
from core.model import Execution, ExecutionEvent

# SKIP LOCKED: concurrent claimers pass over each other's rows instead of queueing on them, so
# each gets a different batch.
_CLAIM = (
    "UPDATE executions SET lease_owner = $1, lease_until = $2 WHERE id IN ("
    f"SELECT id FROM executions WHERE state IN {LEASABLE} "
    "AND (lease_until IS NULL OR lease_until < $3) "
    "ORDER BY created_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) "
    f"RETURNING {EXECUTION_COLUMNS}"
)
_RENEW = (
    "UPDATE executions SET lease_until = $1 WHERE lease_owner = $2 "
    f"AND state IN {LEASABLE} AND id = ANY($3::text[]) RETURNING id"
)
_RELEASE = notifying(
    "UPDATE executions SET lease_owner = NULL, lease_until = NULL "
    f"WHERE lease_owner = $1 AND id = ANY($2::text[]){WRITTEN}",
    changed=False,  # only who leases it changed: no state, no log
)
# A state that is no longer in progress ($10 false) ends the lease in the same statement.
_SAVE_OWNED = notifying(
    f"UPDATE executions SET {STATE_UPDATE}, "
    "lease_owner = CASE WHEN $10 THEN lease_owner END, "
    "lease_until = CASE WHEN $10 THEN lease_until END "
    f"WHERE id = $1 AND lease_owner = $9 AND state IN {LEASABLE}{WRITTEN}"
)
# FOR SHARE holds off a takeover until the events are committed, so the new owner's replay
# reads them.
_HELD = (
    "SELECT id FROM executions WHERE id = ANY($1::text[]) AND lease_owner = $2 "
    f"AND state IN {LEASABLE} FOR SHARE"
)


class PostgresLeases:
    def __init__(self, pool: GuardedPool) -> None:
        self._pool = pool

    async def claim(self, owner: str, *, limit: int, lease: float, now: float) -> list[Execution]:
        found = await self._pool.fetch(_CLAIM, owner, now + lease, now, max(0, limit))
        claimed = [rows.execution(tuple(row)) for row in found]
        return sorted(claimed, key=lambda e: (e.created_at, e.execution_id))

    async def renew(
        self, owner: str, execution_ids: Sequence[str], *, lease: float, now: float
    ) -> list[str]:
        if not execution_ids:
            return []
        found = await self._pool.fetch(
            _RENEW, now + lease, owner, list(dict.fromkeys(execution_ids))
        )
        return [row["id"] for row in found]

    async def release(self, owner: str, execution_ids: Sequence[str]) -> None:
        if execution_ids:
            await self._pool.execute(_RELEASE, owner, list(dict.fromkeys(execution_ids)))

    async def save_owned(
        self, owner: str, execution: Execution, events: Sequence[ExecutionEvent] = ()
    ) -> bool:
        text.check_execution(execution)
        text.check_events(events)
        keep = execution.state.in_progress
        try:
            with for_execution(execution.execution_id):
                async with self._pool.acquire() as conn, conn.transaction():
                    # The row lock this UPDATE takes orders it against a concurrent claim: either
                    # the claim sees the new state, or this sees the new owner and writes nothing.
                    before = await outbox.prior(conn, execution)
                    status = await conn.execute(
                        _SAVE_OWNED, *rows.state_values(execution), owner, keep
                    )
                    if not affected(status):
                        return False
                    await insert_events(conn, events)
                    await outbox.keep(conn, execution, before)  # commits with the state
        except asyncpg.UniqueViolationError:
            raise duplicate_event() from None
        return True

    async def append_owned(self, owner: str, events: Sequence[ExecutionEvent]) -> bool:
        if not events:
            return True
        text.check_events(events)
        ids = sorted({event.execution_id for event in events})
        try:
            with for_execution(ids[0]):
                async with self._pool.acquire() as conn, conn.transaction():
                    if len(await conn.fetch(_HELD, ids, owner)) != len(ids):
                        return False
                    await insert_events(conn, events)
                    await conn.execute(NOTIFY_CHANGED, ids)
        except asyncpg.UniqueViolationError:
            raise duplicate_event() from None
        return True
