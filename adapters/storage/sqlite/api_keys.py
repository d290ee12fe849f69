"""API keys on SQLite (`ports.auth.ApiKeyStore`): the `api_keys` table of the server's
database (migration 3), hashed secrets only.

Reads go to the storage's batch reader; writes go through its group-commit writer, so they
never interleave with its batched transactions.
"""

from __future__ import annotations

import json
import sqlite3

from adapters.storage.batch_reader import BatchReader
from adapters.storage.group_commit import GroupCommitWriter
from adapters.storage.sqlite.sql import changed_now
from core.errors import AlreadyExists
from ports.auth import ApiKey

_COLUMNS = "key_id, name, permissions, revoked, created_at"
_INSERT = (
    "INSERT INTO api_keys (key_id, name, secret_hash, permissions, revoked, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


def _key(row: tuple[str, str, str, int, float]) -> ApiKey:
    key_id, name, permissions, revoked, created_at = row
    return ApiKey(
        key_id=key_id,
        name=name,
        permissions=frozenset(json.loads(permissions)),
        revoked=bool(revoked),
        created_at=created_at,
    )


class SqliteApiKeyStore:
    def __init__(self, reader: BatchReader, writer: GroupCommitWriter):
        self._reader = reader
        self._writer = writer

    async def add(self, key: ApiKey, secret_hash: str) -> None:
        params = (
            key.key_id,
            key.name,
            secret_hash,
            json.dumps(sorted(key.permissions)),
            int(key.revoked),
            key.created_at,
        )

        def job(db: sqlite3.Connection) -> None:
            try:
                db.execute(_INSERT, params)
            except sqlite3.IntegrityError:
                raise AlreadyExists(
                    f"an API key named {key.name!r} already exists", name=key.name
                ) from None

        await self._writer.submit(job)

    async def by_hash(self, secret_hash: str) -> ApiKey | None:
        return await self._one(
            f"SELECT {_COLUMNS} FROM api_keys WHERE secret_hash = ?", secret_hash
        )

    async def get(self, key_id: str) -> ApiKey | None:
        return await self._one(f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = ?", key_id)

    async def list(self) -> list[ApiKey]:
        found = await self._reader.fetchall(f"SELECT {_COLUMNS} FROM api_keys ORDER BY name")
        return [_key(row) for row in found]

    async def revoke(self, key_id: str) -> bool:
        return await self._change("UPDATE api_keys SET revoked = 1 WHERE key_id = ?", key_id)

    async def delete(self, key_id: str) -> bool:
        return await self._change("DELETE FROM api_keys WHERE key_id = ?", key_id)

    async def _one(self, sql: str, value: str) -> ApiKey | None:
        found = await self._reader.fetchall(sql, (value,))
        return _key(found[0]) if found else None

    async def _change(self, sql: str, value: str) -> bool:
        return await self._writer.submit(lambda db: changed_now(db, sql, (value,)) > 0)
