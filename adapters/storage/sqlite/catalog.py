"""The workflow catalog on SQLite (`ports.catalog.Catalog`).

`revision()` is one primary-key read of the `meta` table; `snapshot()` answers from a snapshot
cached by revision and re-reads the catalog only when the revision moved, so a register or
delete by this or any other process is seen by the very next call.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from adapters.storage import text
from adapters.storage.batch_reader import BatchReader
from adapters.storage.group_commit import GroupCommitWriter
from adapters.storage.sqlite import rows
from adapters.storage.sqlite.sql import BUMP, Clock, changed_now, one_now, read_all, read_one
from core.model import CatalogSnapshot, WorkflowInfo, WorkflowRef, WorkflowVersion
from ports.catalog import NewWorkflow, Registered

_LATEST = """
    SELECT w.namespace, w.name, w.version, w.input_schema, w.description, w.timeout
    FROM workflows w
    WHERE w.version = (
        SELECT MAX(x.version) FROM workflows x WHERE x.namespace = w.namespace AND x.name = w.name
    )
"""
# One statement reads the revision and the rows it belongs to (a statement is one read
# transaction); the LEFT JOIN keeps the revision row when the catalog is empty.
_SNAPSHOT = f"""
    SELECT m.value, l.namespace, l.name, l.version, l.input_schema, l.description, l.timeout
    FROM meta m LEFT JOIN ({_LATEST}) l ON 1
    WHERE m.key = 'catalog_revision'
    ORDER BY l.namespace, l.name
"""
_NEWEST = (
    "SELECT namespace, name, version, input_schema, description, timeout, source_hash "
    "FROM workflows WHERE namespace = ? AND name = ? ORDER BY version DESC LIMIT 1"
)
_INSERT = (
    "INSERT INTO workflows (namespace, name, version, source, source_hash, "
    "input_schema, description, created_at, timeout) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The highest version ever given to a ref, kept when its rows are deleted: versions only grow.
_HEAD = "SELECT last_version FROM workflow_heads WHERE namespace = ? AND name = ?"
_SET_HEAD = (
    "INSERT INTO workflow_heads (namespace, name, last_version) VALUES (?, ?, ?) "
    "ON CONFLICT (namespace, name) DO UPDATE SET last_version = excluded.last_version"
)
_VERSION = (
    "SELECT namespace, name, version, input_schema, description, timeout, source, "
    "source_hash, created_at FROM workflows WHERE namespace = ? AND name = ? "
)


class SqliteCatalog:
    def __init__(self, reader: BatchReader, writer: GroupCommitWriter, clock: Clock):
        self._reader = reader
        self._writer = writer
        self._clock = clock
        self._snapshot = CatalogSnapshot(-1)

    async def register(self, workflows: Sequence[NewWorkflow]) -> list[Registered]:
        text.check_workflows(workflows)
        now = self._clock()

        def job(db: sqlite3.Connection) -> list[Registered]:
            results = [_register_one(db, new, now) for new in workflows]
            if any(r.created for r in results):
                db.execute(BUMP, ("catalog_revision",))
            return results

        return await self._writer.submit(job)

    async def revision(self) -> int:
        row = await read_one(self._reader, "SELECT value FROM meta WHERE key = 'catalog_revision'")
        return row[0]

    async def snapshot(self) -> CatalogSnapshot:
        if await self.revision() == self._snapshot.revision:
            return self._snapshot
        found = await read_all(self._reader, _SNAPSHOT)
        infos = tuple(rows.info_from_row(row[1:]) for row in found if row[1] is not None)
        snapshot = CatalogSnapshot(found[0][0], infos)
        # Two concurrent reloads may finish out of order; keep the newer one.
        if snapshot.revision >= self._snapshot.revision:
            self._snapshot = snapshot
        return snapshot

    async def get(self, ref: WorkflowRef, version: int | None = None) -> WorkflowVersion | None:
        params: tuple[Any, ...]
        if version is None:
            sql, params = _VERSION + "ORDER BY version DESC LIMIT 1", (ref.namespace, ref.name)
        else:
            sql, params = _VERSION + "AND version = ?", (ref.namespace, ref.name, version)
        row = await read_one(self._reader, sql, params)
        if row is None:
            return None
        return WorkflowVersion(rows.info_from_row(row[:6]), row[6], row[7], row[8])

    async def versions(self, ref: WorkflowRef) -> list[WorkflowInfo]:
        found = await read_all(
            self._reader,
            "SELECT namespace, name, version, input_schema, description, timeout FROM workflows "
            "WHERE namespace = ? AND name = ? ORDER BY version",
            (ref.namespace, ref.name),
        )
        return [rows.info_from_row(row) for row in found]

    async def list(self, namespace: str | None = None) -> list[WorkflowInfo]:
        snapshot = await self.snapshot()
        if namespace is None:
            return list(snapshot.workflows)
        return list(snapshot.in_namespace(namespace))

    async def delete(self, ref: WorkflowRef, version: int | None = None) -> int:
        sql = "DELETE FROM workflows WHERE namespace = ? AND name = ?"
        params: tuple[Any, ...] = (ref.namespace, ref.name)
        if version is not None:
            sql, params = sql + " AND version = ?", (*params, version)

        def job(db: sqlite3.Connection) -> int:
            deleted = changed_now(db, sql, params)
            if deleted:
                db.execute(BUMP, ("catalog_revision",))
            return deleted

        return await self._writer.submit(job)


def _register_one(db: sqlite3.Connection, new: NewWorkflow, now: float) -> Registered:
    """Inside the register job: a new version unless the latest one has the same source."""
    latest = one_now(db, _NEWEST, (new.ref.namespace, new.ref.name))
    if latest is not None and latest[6] == new.source_hash:
        return Registered(rows.info_from_row(latest[:6]), created=False)
    schema = rows.dump(new.input_schema)
    head = one_now(db, _HEAD, (new.ref.namespace, new.ref.name))
    version = max(latest[2] if latest else 0, head[0] if head else 0) + 1
    info = WorkflowInfo(new.ref, version, rows.load(schema), new.description, new.timeout)
    db.execute(_SET_HEAD, (new.ref.namespace, new.ref.name, version))
    db.execute(
        _INSERT,
        (
            new.ref.namespace,
            new.ref.name,
            info.version,
            new.source,
            new.source_hash,
            schema,
            new.description,
            now,
            new.timeout,
        ),
    )
    return Registered(info, created=True)
