"""The workflow catalog on PostgreSQL (`ports.catalog.Catalog`).

The revision lives in one row of `revisions`: `revision()` reads it (one primary-key query),
so a register or delete by any replica is seen by every replica's next call. `snapshot()`
re-reads the catalog only when the revision moved, and reads revision and rows in one
statement, so the two always belong together. Writes first lock the revision row, which puts
registers from all replicas in one queue: two replicas registering the same workflow never
compute the same next version.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from adapters.storage import text
from adapters.storage.postgres.guard import GuardedPool
from adapters.storage.postgres.rows import INFO_COLUMNS, affected, dump, info
from adapters.storage.postgres.sql import BUMP, LOCK_REVISION, REVISION, Clock
from core.model import CatalogSnapshot, WorkflowInfo, WorkflowRef, WorkflowVersion
from ports.catalog import NewWorkflow, Registered

_LATEST = f"""
    SELECT DISTINCT ON (namespace, name) {INFO_COLUMNS}
    FROM workflows ORDER BY namespace, name, version DESC
"""
_SNAPSHOT = f"""
    SELECT r.value, l.namespace, l.name, l.version, l.input_schema, l.description, l.timeout
    FROM revisions r LEFT JOIN ({_LATEST}) l ON TRUE
    WHERE r.key = 'catalog'
    ORDER BY l.namespace, l.name
"""
_NEWEST = (
    f"SELECT {INFO_COLUMNS}, source_hash FROM workflows "
    "WHERE namespace = $1 AND name = $2 ORDER BY version DESC LIMIT 1"
)
_INSERT = (
    "INSERT INTO workflows (namespace, name, version, source, source_hash, "
    "input_schema, description, created_at, timeout) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)
# The highest version ever given to a ref, kept when its rows are deleted: versions only grow.
_HEAD = "SELECT last_version FROM workflow_heads WHERE namespace = $1 AND name = $2"
_SET_HEAD = (
    "INSERT INTO workflow_heads (namespace, name, last_version) VALUES ($1, $2, $3) "
    "ON CONFLICT (namespace, name) DO UPDATE SET last_version = excluded.last_version"
)
_VERSION = (
    f"SELECT {INFO_COLUMNS}, source, source_hash, created_at FROM workflows "
    "WHERE namespace = $1 AND name = $2 "
)


class PostgresCatalog:
    def __init__(self, pool: GuardedPool, clock: Clock) -> None:
        self._pool = pool
        self._clock = clock
        self._snapshot = CatalogSnapshot(-1)

    async def register(self, workflows: Sequence[NewWorkflow]) -> list[Registered]:
        text.check_workflows(workflows)
        now = self._clock()
        results: list[Registered] = []
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(LOCK_REVISION, "catalog")
            for new in workflows:
                results.append(await _register_one(conn, new, now))
            if any(r.created for r in results):
                await conn.execute(BUMP, "catalog")
        return results

    async def revision(self) -> int:
        return await self._pool.fetchval(REVISION, "catalog")

    async def snapshot(self) -> CatalogSnapshot:
        if await self.revision() == self._snapshot.revision:
            return self._snapshot
        found = await self._pool.fetch(_SNAPSHOT)
        infos = tuple(info(tuple(row)[1:]) for row in found if row["namespace"] is not None)
        snapshot = CatalogSnapshot(found[0]["value"], infos)
        # Two concurrent reloads may finish out of order; keep the newer one.
        if snapshot.revision >= self._snapshot.revision:
            self._snapshot = snapshot
        return snapshot

    async def get(self, ref: WorkflowRef, version: int | None = None) -> WorkflowVersion | None:
        if version is None:
            row = await self._pool.fetchrow(
                _VERSION + "ORDER BY version DESC LIMIT 1", ref.namespace, ref.name
            )
        else:
            row = await self._pool.fetchrow(
                _VERSION + "AND version = $3", ref.namespace, ref.name, version
            )
        if row is None:
            return None
        values = tuple(row)
        return WorkflowVersion(info(values[:6]), *values[6:])

    async def versions(self, ref: WorkflowRef) -> list[WorkflowInfo]:
        found = await self._pool.fetch(
            f"SELECT {INFO_COLUMNS} FROM workflows WHERE namespace = $1 AND name = $2 "
            "ORDER BY version",
            ref.namespace,
            ref.name,
        )
        return [info(tuple(row)) for row in found]

    async def list(self, namespace: str | None = None) -> list[WorkflowInfo]:
        snapshot = await self.snapshot()
        if namespace is None:
            return list(snapshot.workflows)
        return list(snapshot.in_namespace(namespace))

    async def delete(self, ref: WorkflowRef, version: int | None = None) -> int:
        sql = "DELETE FROM workflows WHERE namespace = $1 AND name = $2"
        params: tuple[Any, ...] = (ref.namespace, ref.name)
        if version is not None:
            sql, params = sql + " AND version = $3", (*params, version)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(LOCK_REVISION, "catalog")
            deleted = affected(await conn.execute(sql, *params))
            if deleted:
                await conn.execute(BUMP, "catalog")
        return deleted


async def _register_one(conn: asyncpg.Connection, new: NewWorkflow, now: float) -> Registered:
    """Inside the register transaction: a new version unless the latest has the same source."""
    latest = await conn.fetchrow(_NEWEST, new.ref.namespace, new.ref.name)
    if latest is not None and latest["source_hash"] == new.source_hash:
        return Registered(info(tuple(latest)[:6]), created=False)
    head = await conn.fetchval(_HEAD, new.ref.namespace, new.ref.name)
    version = max(latest["version"] if latest else 0, head or 0) + 1
    await conn.execute(_SET_HEAD, new.ref.namespace, new.ref.name, version)
    registered = WorkflowInfo(
        new.ref,
        version,
        # A copy through JSON: the caller gets back exactly what a read will give.
        None if new.input_schema is None else json.loads(dump(new.input_schema)),
        new.description,
        new.timeout,
    )
    await conn.execute(
        _INSERT,
        new.ref.namespace,
        new.ref.name,
        registered.version,
        new.source,
        new.source_hash,
        new.input_schema,
        new.description,
        now,
        new.timeout,
    )
    return Registered(registered, created=True)
