"""Idempotency keys on PostgreSQL (`ports.idempotency.IdempotencyKeys`): the
`idempotency_keys` table (migration 4), shared by every replica.

A claim inserts, or takes over an expired mapping, with `INSERT ... ON CONFLICT DO UPDATE ...
WHERE expired`; the primary key makes racing claims from any number of replicas wait for each
other, so exactly one of them gets a row back. A claim that gets none reads what holds the key,
in a statement of its own: its snapshot is taken after the winner committed (one statement with
a CTE would still read the snapshot from before the conflict, and find nothing).
"""

from __future__ import annotations

from adapters.storage.postgres.guard import GuardedPool
from adapters.storage.postgres.rows import affected
from core.errors import StorageUnavailable
from ports.idempotency import Claimed

_CLAIM = (
    "INSERT INTO idempotency_keys (principal, key, fingerprint, execution_id, created_at) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (principal, key) DO UPDATE SET "
    "fingerprint = excluded.fingerprint, execution_id = excluded.execution_id, "
    "created_at = excluded.created_at WHERE idempotency_keys.created_at < $6 "
    "RETURNING created_at"
)
_HELD = (
    "SELECT fingerprint, execution_id, created_at FROM idempotency_keys "
    "WHERE principal = $1 AND key = $2"
)
_RELEASE = "DELETE FROM idempotency_keys WHERE principal = $1 AND key = $2 AND execution_id = $3"
_PURGE = "DELETE FROM idempotency_keys WHERE created_at < $1"
# A mapping found held, then gone before it was read (released or purged meanwhile), is claimed
# again; a key cannot come and go more often than that without something being wrong.
_ATTEMPTS = 3


class PostgresIdempotencyKeys:
    def __init__(self, pool: GuardedPool) -> None:
        self._pool = pool

    async def claim(
        self,
        principal: str,
        key: str,
        fingerprint: str,
        execution_id: str,
        *,
        now: float,
        window: float,
    ) -> Claimed:
        for _ in range(_ATTEMPTS):
            made = await self._pool.fetchval(
                _CLAIM, principal, key, fingerprint, execution_id, now, now - window
            )
            if made is not None:
                return Claimed(fingerprint, execution_id, now, won=True)
            held = await self._pool.fetchrow(_HELD, principal, key)
            if held is not None:
                return Claimed(held[0], held[1], held[2], won=False)
        raise StorageUnavailable(
            "an idempotency key kept changing while it was claimed", reason="busy"
        )

    async def release(self, principal: str, key: str, execution_id: str) -> None:
        await self._pool.execute(_RELEASE, principal, key, execution_id)

    async def purge(self, older_than: float) -> int:
        return affected(await self._pool.execute(_PURGE, older_than))
