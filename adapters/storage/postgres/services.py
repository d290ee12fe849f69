"""Service services on PostgreSQL (`ports.services.ServiceStore`), and the revisions every
service call reads (`ports.services.Revisions`).

A service update reads its row with `SELECT ... FOR UPDATE` in the transaction that writes it,
so concurrent edits from any replica are applied one after the other and none is lost. Writes
lock the service row before the revision row, always in that order, so they cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
from attrs import evolve

from adapters.storage import text
from adapters.storage.postgres import rows
from adapters.storage.postgres.guard import GuardedPool
from adapters.storage.postgres.rows import SERVICE_COLUMNS, affected
from adapters.storage.postgres.sql import BUMP, REVISION, Clock
from core.errors import AlreadyExists, ServiceNotFound
from core.model import ServiceDefinition

_INSERT = (
    f"INSERT INTO services ({SERVICE_COLUMNS}, created_at, updated_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $7)"
)
_UPDATE = (
    "UPDATE services SET namespaces = $2, workflows = $3, exclusions = $4, "
    "mcp_enabled = $5, revision = $6, updated_at = $7 WHERE name = $1"
)
_REVISIONS = "SELECT key, value FROM revisions WHERE key IN ('services', 'catalog')"


class PostgresServiceStore:
    def __init__(self, pool: GuardedPool, clock: Clock) -> None:
        self._pool = pool
        self._clock = clock

    async def create(self, service: ServiceDefinition) -> ServiceDefinition:
        text.check_service(service)
        now = self._clock()
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(_INSERT, *rows.service_values(service), now)
                await conn.execute(BUMP, "services")
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(
                f"service {service.name!r} already exists", service=service.name
            ) from None
        return service

    async def get(self, name: str) -> ServiceDefinition | None:
        if not text.storable_text(name):
            return None  # such a name is never stored
        row = await self._pool.fetchrow(
            f"SELECT {SERVICE_COLUMNS} FROM services WHERE name = $1", name
        )
        return None if row is None else rows.service(tuple(row))

    async def list(self) -> list[ServiceDefinition]:
        found = await self._pool.fetch(f"SELECT {SERVICE_COLUMNS} FROM services ORDER BY name")
        return [rows.service(tuple(row)) for row in found]

    async def update(
        self, name: str, edit: Callable[[ServiceDefinition], ServiceDefinition]
    ) -> ServiceDefinition:
        if not text.storable_text(name):
            raise ServiceNotFound(f"service {name!r} not found", service=name)
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT {SERVICE_COLUMNS} FROM services WHERE name = $1 FOR UPDATE", name
            )
            if row is None:
                raise ServiceNotFound(f"service {name!r} not found", service=name)
            current = rows.service(tuple(row))
            # The name is the key and the revision belongs to the store, whatever `edit` returns.
            updated = evolve(edit(current), name=name, revision=current.revision + 1)
            text.check_service(updated)
            await conn.execute(_UPDATE, *rows.service_values(updated), self._clock())
            await conn.execute(BUMP, "services")
        return updated

    async def delete(self, name: str) -> bool:
        if not text.storable_text(name):
            return False
        async with self._pool.acquire() as conn, conn.transaction():
            deleted = affected(await conn.execute("DELETE FROM services WHERE name = $1", name))
            if deleted:
                await conn.execute(BUMP, "services")
        return deleted > 0

    async def revision(self) -> int:
        return await self._pool.fetchval(REVISION, "services")


class PostgresRevisions:
    def __init__(self, pool: GuardedPool) -> None:
        self._pool = pool

    async def current(self) -> tuple[int, int]:
        found = dict(await self._pool.fetch(_REVISIONS))
        return found["services"], found["catalog"]
