"""Retention on PostgreSQL (`ports.retention.Retention`).

Each chunk is one statement: it locks the oldest finished executions it can take, skipping
those another replica's purge has locked (`FOR UPDATE SKIP LOCKED`), and deletes them with
their events and callback deliveries in the same transaction. Two replicas purging at once
therefore take disjoint chunks and never wait on each other, and each execution is deleted
and counted once. A chunk is short, so the calls' writes are not held behind it.
"""

from __future__ import annotations

from adapters.storage.postgres.guard import GuardedPool
from adapters.storage.states import FINAL

CHUNK = 500  # executions per statement (with all their events and deliveries)

# Served by migration 5's partial index: `state IN FINAL` repeats its condition.
_PURGE_FINISHED = f"""
WITH doomed AS (
    SELECT id FROM executions
    WHERE state IN {FINAL} AND updated_at < $1
        AND NOT EXISTS (SELECT 1 FROM idempotency_keys k WHERE k.execution_id = executions.id)
    ORDER BY updated_at LIMIT $2
    FOR UPDATE SKIP LOCKED
), events AS (
    DELETE FROM execution_events WHERE execution_id IN (SELECT id FROM doomed)
), deliveries AS (
    DELETE FROM callback_deliveries WHERE execution_id IN (SELECT id FROM doomed)
), gone AS (
    DELETE FROM executions WHERE id IN (SELECT id FROM doomed) RETURNING 1
)
SELECT count(*) FROM gone
"""


class PostgresRetention:
    def __init__(self, pool: GuardedPool) -> None:
        self._pool = pool

    async def purge_finished(self, older_than: float, batch: int) -> int:
        """Up to `batch` executions, CHUNK per statement; stops at the first chunk short of
        full (nothing more is old enough, or the rest is another replica's to delete). At
        most ceil(batch / CHUNK) statements."""
        purged = 0
        while purged < batch:
            wanted = min(CHUNK, batch - purged)
            done = int(await self._pool.fetchval(_PURGE_FINISHED, older_than, wanted))
            purged += done
            if done < wanted:
                break
        return purged
