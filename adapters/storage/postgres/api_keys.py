"""API keys on PostgreSQL (`ports.auth.ApiKeyStore`): the `api_keys` table, hashed secrets only."""

from __future__ import annotations

import asyncpg

from adapters.storage.postgres.guard import GuardedPool
from adapters.storage.postgres.rows import API_KEY_COLUMNS, affected, api_key
from core.errors import AlreadyExists
from ports.auth import ApiKey

_INSERT = f"INSERT INTO api_keys ({API_KEY_COLUMNS}, secret_hash) VALUES ($1, $2, $3, $4, $5, $6)"


class PostgresApiKeyStore:
    def __init__(self, pool: GuardedPool) -> None:
        self._pool = pool

    async def add(self, key: ApiKey, secret_hash: str) -> None:
        try:
            await self._pool.execute(
                _INSERT,
                key.key_id,
                key.name,
                sorted(key.permissions),
                key.revoked,
                key.created_at,
                secret_hash,
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(
                f"an API key named {key.name!r} already exists", name=key.name
            ) from None

    async def by_hash(self, secret_hash: str) -> ApiKey | None:
        return await self._one("secret_hash", secret_hash)

    async def get(self, key_id: str) -> ApiKey | None:
        return await self._one("key_id", key_id)

    async def list(self) -> list[ApiKey]:
        found = await self._pool.fetch(f"SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY name")
        return [api_key(tuple(row)) for row in found]

    async def revoke(self, key_id: str) -> bool:
        status = await self._pool.execute(
            "UPDATE api_keys SET revoked = TRUE WHERE key_id = $1", key_id
        )
        return affected(status) > 0

    async def delete(self, key_id: str) -> bool:
        status = await self._pool.execute("DELETE FROM api_keys WHERE key_id = $1", key_id)
        return affected(status) > 0

    async def _one(self, column: str, value: str) -> ApiKey | None:
        # `column` is one of the two names above, never caller input.
        row = await self._pool.fetchrow(
            f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE {column} = $1", value
        )
        return None if row is None else api_key(tuple(row))
