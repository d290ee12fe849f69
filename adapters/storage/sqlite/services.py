"""Service definitions on SQLite (`ports.services.ServiceStore`), and the revisions every
service call reads (`ports.services.Revisions`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from attrs import evolve

from adapters.storage import text
from adapters.storage.batch_reader import BatchReader
from adapters.storage.group_commit import GroupCommitWriter
from adapters.storage.sqlite import rows
from adapters.storage.sqlite.sql import BUMP, Clock, changed_now, one_now, read_all, read_one
from core.errors import AlreadyExists, ServiceNotFound
from core.model import ServiceDefinition

_INSERT = (
    f"INSERT INTO services ({rows.SERVICE_COLUMNS}, created_at, updated_at) "
    "VALUES (:name, :namespaces, :workflows, :exclusions, :mcp_enabled, :revision, :now, :now)"
)
_UPDATE = (
    "UPDATE services SET namespaces = :namespaces, workflows = :workflows, "
    "exclusions = :exclusions, mcp_enabled = :mcp_enabled, revision = :revision, "
    "updated_at = :now WHERE name = :name"
)
_ONE = f"SELECT {rows.SERVICE_COLUMNS} FROM services WHERE name = ?"
_REVISIONS = "SELECT key, value FROM meta WHERE key IN ('services_revision', 'catalog_revision')"


class SqliteServiceStore:
    def __init__(self, reader: BatchReader, writer: GroupCommitWriter, clock: Clock):
        self._reader = reader
        self._writer = writer
        self._clock = clock

    async def create(self, service: ServiceDefinition) -> ServiceDefinition:
        text.check_service(service)
        params = rows.service_to_params(service) | {"now": self._clock()}

        def job(db: sqlite3.Connection) -> ServiceDefinition:
            try:
                db.execute(_INSERT, params)
            except sqlite3.IntegrityError:
                raise AlreadyExists(
                    f"service {service.name!r} already exists", service=service.name
                ) from None
            db.execute(BUMP, ("services_revision",))
            return service

        return await self._writer.submit(job)

    async def get(self, name: str) -> ServiceDefinition | None:
        if not text.storable_text(name):
            return None  # such a name is never stored
        row = await read_one(self._reader, _ONE, (name,))
        return None if row is None else rows.service_from_row(row)

    async def list(self) -> list[ServiceDefinition]:
        found = await read_all(
            self._reader, f"SELECT {rows.SERVICE_COLUMNS} FROM services ORDER BY name"
        )
        return [rows.service_from_row(row) for row in found]

    async def update(
        self, name: str, edit: Callable[[ServiceDefinition], ServiceDefinition]
    ) -> ServiceDefinition:
        if not text.storable_text(name):
            raise ServiceNotFound(f"service {name!r} not found", service=name)

        def job(db: sqlite3.Connection) -> ServiceDefinition:
            # Read and write on the writer connection inside its transaction: nothing can
            # commit in between, which is what keeps concurrent edits from losing each other.
            row = one_now(db, _ONE, (name,))
            if row is None:
                raise ServiceNotFound(f"service {name!r} not found", service=name)
            current = rows.service_from_row(row)
            # The name is the key and the revision belongs to the store, whatever `edit` returns.
            updated = evolve(edit(current), name=name, revision=current.revision + 1)
            text.check_service(updated)
            db.execute(_UPDATE, rows.service_to_params(updated) | {"now": self._clock()})
            db.execute(BUMP, ("services_revision",))
            return updated

        return await self._writer.submit(job)

    async def delete(self, name: str) -> bool:
        if not text.storable_text(name):
            return False

        def job(db: sqlite3.Connection) -> bool:
            deleted = changed_now(db, "DELETE FROM services WHERE name = ?", (name,)) > 0
            if deleted:
                db.execute(BUMP, ("services_revision",))
            return deleted

        return await self._writer.submit(job)

    async def revision(self) -> int:
        row = await read_one(self._reader, "SELECT value FROM meta WHERE key = 'services_revision'")
        return row[0]


class SqliteRevisions:
    """Both revisions in one statement; the concurrent requests of a batch share its one run."""

    def __init__(self, reader: BatchReader) -> None:
        self._reader = reader

    async def current(self) -> tuple[int, int]:
        found = dict(await read_all(self._reader, _REVISIONS))
        return found["services_revision"], found["catalog_revision"]
