"""Idempotency keys on SQLite (`ports.idempotency.IdempotencyKeys`): the `idempotency_keys`
table (migration 6).

A claim is one job on the group-commit writer: the insert (or the replacement of an expired
mapping) and the read of what holds the key run in the writer's transaction, so two claims on
one key never both win, and the winner's mapping is durable once its batch has committed.
"""

from __future__ import annotations

import sqlite3

from adapters.storage.group_commit import GroupCommitWriter
from adapters.storage.sqlite.sql import changed_now, one_now
from ports.idempotency import Claimed

# An expired mapping (made before the window's start, the 6th value) is taken over in place.
_CLAIM = (
    "INSERT INTO idempotency_keys (principal, key, fingerprint, execution_id, created_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (principal, key) DO UPDATE SET "
    "fingerprint = excluded.fingerprint, execution_id = excluded.execution_id, "
    "created_at = excluded.created_at WHERE idempotency_keys.created_at < ?"
)
_HELD = (
    "SELECT fingerprint, execution_id, created_at FROM idempotency_keys "
    "WHERE principal = ? AND key = ?"
)
_RELEASE = "DELETE FROM idempotency_keys WHERE principal = ? AND key = ? AND execution_id = ?"
_PURGE = "DELETE FROM idempotency_keys WHERE created_at < ?"


class SqliteIdempotencyKeys:
    def __init__(self, writer: GroupCommitWriter) -> None:
        # Claims read on the writer, inside their own transaction: no reader is needed.
        self._writer = writer

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
        def job(db: sqlite3.Connection) -> Claimed:
            params = (principal, key, fingerprint, execution_id, now, now - window)
            if changed_now(db, _CLAIM, params):  # inserted, or took over an expired mapping
                return Claimed(fingerprint, execution_id, now, won=True)
            held_fingerprint, held_id, created_at = one_now(db, _HELD, (principal, key))
            return Claimed(held_fingerprint, held_id, created_at, won=False)

        return await self._writer.submit(job)

    async def release(self, principal: str, key: str, execution_id: str) -> None:
        await self._writer.submit(
            lambda db: changed_now(db, _RELEASE, (principal, key, execution_id))
        )

    async def purge(self, older_than: float) -> int:
        return await self._writer.submit(lambda db: changed_now(db, _PURGE, (older_than,)))
