"""ApiKeyStore adapters: SQLite (on the main database, table from migration 3) and memory."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from attrs import evolve

from core.errors import AlreadyExists
from ports.auth import ApiKey

T = TypeVar("T")
_COLUMNS = "key_id, name, permissions, revoked, created_at"


class _Reader(Protocol):
    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Any]: ...


class _Writer(Protocol):
    async def submit(self, job: Callable[[sqlite3.Connection], T]) -> T: ...


def _row_to_key(row: Any) -> ApiKey:
    key_id, name, permissions, revoked, created_at = row
    return ApiKey(
        key_id=key_id,
        name=name,
        permissions=frozenset(json.loads(permissions)),
        revoked=bool(revoked),
        created_at=created_at,
    )


class SqliteApiKeyStore:
    """Keys in the `api_keys` table of the server's SQLite database (migration 3).

    Reads go to the storage's batch `reader`; writes go through its group-commit `writer`, so
    they never interleave with its batched transactions.
    """

    def __init__(self, reader: _Reader, writer: _Writer):
        self._reader = reader
        self._writer = writer

    @classmethod
    def of(cls, storage: Any) -> SqliteApiKeyStore:
        """The store on the database of an open `adapters.storage.sqlite.SqliteStorage`."""
        existing = getattr(storage, "api_keys", None)
        if isinstance(existing, SqliteApiKeyStore):
            return existing
        return cls(storage._reader, storage._writer)

    async def add(self, key: ApiKey, secret_hash: str) -> None:
        def job(db: sqlite3.Connection) -> None:
            try:
                db.execute(
                    "INSERT INTO api_keys (key_id, name, secret_hash, permissions, revoked, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        key.key_id,
                        key.name,
                        secret_hash,
                        json.dumps(sorted(key.permissions)),
                        int(key.revoked),
                        key.created_at,
                    ),
                )
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
        return [_row_to_key(row) for row in found]

    async def revoke(self, key_id: str) -> bool:
        return await self._change("UPDATE api_keys SET revoked = 1 WHERE key_id = ?", key_id)

    async def delete(self, key_id: str) -> bool:
        return await self._change("DELETE FROM api_keys WHERE key_id = ?", key_id)

    async def _one(self, sql: str, value: str) -> ApiKey | None:
        found = await self._reader.fetchall(sql, (value,))
        return _row_to_key(found[0]) if found else None

    async def _change(self, sql: str, value: str) -> bool:
        def job(db: sqlite3.Connection) -> bool:
            return db.execute(sql, (value,)).rowcount > 0

        return await self._writer.submit(job)


class MemoryApiKeyStore:
    """The in-memory twin that proves the contract; not for production use."""

    def __init__(self) -> None:
        self._keys: dict[str, ApiKey] = {}
        self._hashes: dict[str, str] = {}  # secret hash -> key id

    async def add(self, key: ApiKey, secret_hash: str) -> None:
        taken = key.key_id in self._keys or secret_hash in self._hashes
        if taken or any(k.name == key.name for k in self._keys.values()):
            raise AlreadyExists(f"an API key named {key.name!r} already exists", name=key.name)
        self._keys[key.key_id] = key
        self._hashes[secret_hash] = key.key_id

    async def by_hash(self, secret_hash: str) -> ApiKey | None:
        key_id = self._hashes.get(secret_hash)
        return None if key_id is None else self._keys.get(key_id)

    async def get(self, key_id: str) -> ApiKey | None:
        return self._keys.get(key_id)

    async def list(self) -> list[ApiKey]:
        return sorted(self._keys.values(), key=lambda k: k.name)

    async def revoke(self, key_id: str) -> bool:
        key = self._keys.get(key_id)
        if key is None:
            return False
        self._keys[key_id] = evolve(key, revoked=True)
        return True

    async def delete(self, key_id: str) -> bool:
        if self._keys.pop(key_id, None) is None:
            return False
        self._hashes = {h: k for h, k in self._hashes.items() if k != key_id}
        return True
