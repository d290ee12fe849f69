"""The SQLite stores with their writes as aiosqlite jobs. Reads are the hand-written stores'
own (they only ask the reader for `fetchall`, which `AioReader` offers); each write job below
runs the same statements as its twin in `adapters/storage/sqlite/`, awaiting each one."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, cast

import aiosqlite
from attrs import evolve

from adapters.storage.batch_reader import BatchReader
from adapters.storage.group_commit import GroupCommitWriter
from adapters.storage.local_signals import LocalSignals
from adapters.storage.sqlite import catalog, leases, rows, services
from adapters.storage.sqlite.api_keys import _INSERT as _INSERT_KEY
from adapters.storage.sqlite.api_keys import SqliteApiKeyStore
from adapters.storage.sqlite.catalog import SqliteCatalog
from adapters.storage.sqlite.executions import _SAVE_STATE, SqliteExecutionLog, signal_changes
from adapters.storage.sqlite.leases import SqliteLeases
from adapters.storage.sqlite.services import SqliteServiceStore
from adapters.storage.sqlite.sql import BUMP, INSERT_EVENTS, INSERT_EXECUTION, Clock, marks
from adapters.storage.sqlite_aio.batching import AioReader, AioWriter
from adapters.storage.states import LEASABLE
from core.errors import AlreadyExists, ServiceNotFound
from core.model import Execution, ExecutionEvent, ServiceDefinition, WorkflowInfo, WorkflowRef
from ports.auth import ApiKey
from ports.catalog import NewWorkflow, Registered

Db = aiosqlite.Connection


def _as_base(reader: AioReader, writer: AioWriter) -> tuple[BatchReader, GroupCommitWriter]:
    # The base stores read through `fetchall` only, which AioReader has; every method that
    # uses the writer is overridden here, so the base never calls it with a sync job.
    return cast(BatchReader, reader), cast(GroupCommitWriter, writer)


async def _all(db: Db, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    return list(await db.execute_fetchall(sql, params))


async def _changed(db: Db, sql: str, params: Sequence[Any] = ()) -> int:
    return (await db.execute(sql, params)).rowcount


async def _insert_events(db: Db, event_params: list[tuple[Any, ...]]) -> None:
    if not event_params:
        return
    try:
        await db.executemany(INSERT_EVENTS, event_params)
    except sqlite3.IntegrityError:
        raise AlreadyExists("an event with this execution_id and seq already exists") from None


class AioCatalog(SqliteCatalog):
    def __init__(self, reader: AioReader, writer: AioWriter, clock: Clock) -> None:
        super().__init__(*_as_base(reader, writer), clock)
        self._aio = writer

    async def register(self, workflows: Sequence[NewWorkflow]) -> list[Registered]:
        now = self._clock()

        async def job(db: Db) -> list[Registered]:
            results = [await _register_one(db, new, now) for new in workflows]
            if any(r.created for r in results):
                await db.execute(BUMP, ("catalog_revision",))
            return results

        return await self._aio.submit(job)

    async def delete(self, ref: WorkflowRef, version: int | None = None) -> int:
        sql = "DELETE FROM workflows WHERE namespace = ? AND name = ?"
        params: tuple[Any, ...] = (ref.namespace, ref.name)
        if version is not None:
            sql, params = sql + " AND version = ?", (*params, version)

        async def job(db: Db) -> int:
            deleted = await _changed(db, sql, params)
            if deleted:
                await db.execute(BUMP, ("catalog_revision",))
            return deleted

        return await self._aio.submit(job)


async def _register_one(db: Db, new: NewWorkflow, now: float) -> Registered:
    found = await _all(db, catalog._NEWEST, (new.ref.namespace, new.ref.name))
    latest = found[0] if found else None
    if latest is not None and latest[5] == new.source_hash:
        return Registered(rows.info_from_row(latest[:5]), created=False)
    schema = rows.dump(new.input_schema)
    info = WorkflowInfo(new.ref, latest[2] + 1 if latest else 1, rows.load(schema), new.description)
    values = (new.ref.namespace, new.ref.name, info.version, new.source, new.source_hash)
    await db.execute(catalog._INSERT, (*values, schema, new.description, now))
    return Registered(info, created=True)


class AioServiceStore(SqliteServiceStore):
    def __init__(self, reader: AioReader, writer: AioWriter, clock: Clock) -> None:
        super().__init__(*_as_base(reader, writer), clock)
        self._aio = writer

    async def create(self, service: ServiceDefinition) -> ServiceDefinition:
        params = rows.service_to_params(service) | {"now": self._clock()}

        async def job(db: Db) -> ServiceDefinition:
            try:
                await db.execute(services._INSERT, params)
            except sqlite3.IntegrityError:
                raise AlreadyExists(
                    f"service {service.name!r} already exists", service=service.name
                ) from None
            await db.execute(BUMP, ("services_revision",))
            return service

        return await self._aio.submit(job)

    async def update(
        self, name: str, edit: Callable[[ServiceDefinition], ServiceDefinition]
    ) -> ServiceDefinition:
        async def job(db: Db) -> ServiceDefinition:
            found = await _all(db, services._ONE, (name,))
            if not found:
                raise ServiceNotFound(f"service {name!r} not found", service=name)
            current = rows.service_from_row(found[0])
            updated = evolve(edit(current), name=name, revision=current.revision + 1)
            params = rows.service_to_params(updated) | {"now": self._clock()}
            await db.execute(services._UPDATE, params)
            await db.execute(BUMP, ("services_revision",))
            return updated

        return await self._aio.submit(job)

    async def delete(self, name: str) -> bool:
        async def job(db: Db) -> bool:
            deleted = await _changed(db, "DELETE FROM services WHERE name = ?", (name,)) > 0
            if deleted:
                await db.execute(BUMP, ("services_revision",))
            return deleted

        return await self._aio.submit(job)


class AioExecutionLog(SqliteExecutionLog):
    def __init__(self, reader: AioReader, writer: AioWriter, signals: LocalSignals) -> None:
        super().__init__(*_as_base(reader, writer), signals)
        self._aio = writer

    async def create(self, execution: Execution) -> None:
        params = rows.execution_to_params(execution)

        async def job(db: Db) -> None:
            try:
                await db.execute(INSERT_EXECUTION, params)
            except sqlite3.IntegrityError:
                raise AlreadyExists(
                    f"execution {execution.execution_id!r} already exists",
                    execution_id=execution.execution_id,
                ) from None

        await self._aio.submit(job)
        self._signals.changed(execution.execution_id)
        if execution.state.in_progress:
            self._signals.claimable()

    async def save(self, execution: Execution, events: Sequence[ExecutionEvent] = ()) -> None:
        state = rows.execution_state_params(execution)
        event_params = [rows.event_to_params(event) for event in events]
        leasable = execution.state.in_progress

        async def job(db: Db) -> bool:
            saved = await _all(db, _SAVE_STATE, state)
            if not saved:  # not stored yet: the whole row
                await db.execute(INSERT_EXECUTION, rows.execution_to_params(execution))
            await _insert_events(db, event_params)
            return bool(saved[0][0]) if saved else leasable

        claimable = await self._aio.submit(job)
        self._signals.changed(execution.execution_id)
        if claimable:
            self._signals.claimable()

    async def append(self, events: Sequence[ExecutionEvent]) -> None:
        if not events:
            return
        event_params = [rows.event_to_params(event) for event in events]
        await self._aio.submit(lambda db: _insert_events(db, event_params))
        signal_changes(self._signals, events)


class AioLeases(SqliteLeases):
    def __init__(self, writer: AioWriter, signals: LocalSignals) -> None:
        super().__init__(cast(GroupCommitWriter, writer), signals)
        self._aio = writer

    async def claim(self, owner: str, *, limit: int, lease: float, now: float) -> list[Execution]:
        params = (owner, now + lease, now, max(0, limit))

        async def job(db: Db) -> list[Execution]:
            return [rows.execution_from_row(row) for row in await _all(db, leases._CLAIM, params)]

        claimed = await self._aio.submit(job)
        return sorted(claimed, key=lambda e: (e.created_at, e.execution_id))

    async def renew(
        self, owner: str, execution_ids: Sequence[str], *, lease: float, now: float
    ) -> list[str]:
        ids = list(dict.fromkeys(execution_ids))
        if not ids:
            return []
        sql = (
            "UPDATE executions SET lease_until = ? WHERE lease_owner = ? "
            f"AND state IN {LEASABLE} AND id IN ({marks(ids)}) RETURNING id"
        )

        async def job(db: Db) -> list[str]:
            return [row[0] for row in await _all(db, sql, (now + lease, owner, *ids))]

        return await self._aio.submit(job)

    async def release(self, owner: str, execution_ids: Sequence[str]) -> None:
        ids = list(dict.fromkeys(execution_ids))
        if not ids:
            return
        sql = (
            "UPDATE executions SET lease_owner = NULL, lease_until = NULL "
            f"WHERE lease_owner = ? AND id IN ({marks(ids)})"
        )

        async def job(db: Db) -> bool:
            return await _changed(db, sql, (owner, *ids)) > 0

        if await self._aio.submit(job):
            self._signals.claimable()

    async def save_owned(
        self, owner: str, execution: Execution, events: Sequence[ExecutionEvent] = ()
    ) -> bool:
        *state, execution_id = rows.execution_state_params(execution)
        keep = execution.state.in_progress
        event_params = [rows.event_to_params(event) for event in events]
        params = (*state, keep, keep, execution_id, owner)

        async def job(db: Db) -> bool:
            if not await _changed(db, leases._SAVE_OWNED, params):
                return False
            await _insert_events(db, event_params)
            return True

        saved = await self._aio.submit(job)
        if saved:
            self._signals.changed(execution_id)
        return saved

    async def append_owned(self, owner: str, events: Sequence[ExecutionEvent]) -> bool:
        if not events:
            return True
        ids = sorted({event.execution_id for event in events})
        event_params = [rows.event_to_params(event) for event in events]
        sql = (
            f"SELECT COUNT(*) FROM executions WHERE id IN ({marks(ids)}) "
            f"AND lease_owner = ? AND state IN {LEASABLE}"
        )

        async def job(db: Db) -> bool:
            if (await _all(db, sql, (*ids, owner)))[0][0] != len(ids):
                return False
            await _insert_events(db, event_params)
            return True

        appended = await self._aio.submit(job)
        if appended:
            signal_changes(self._signals, events)
        return appended


class AioApiKeyStore(SqliteApiKeyStore):
    def __init__(self, reader: AioReader, writer: AioWriter) -> None:
        super().__init__(*_as_base(reader, writer))
        self._aio = writer

    async def add(self, key: ApiKey, secret_hash: str) -> None:
        permissions = json.dumps(sorted(key.permissions))
        params = (key.key_id, key.name, secret_hash, permissions, int(key.revoked), key.created_at)

        async def job(db: Db) -> None:
            try:
                await db.execute(_INSERT_KEY, params)
            except sqlite3.IntegrityError:
                raise AlreadyExists(
                    f"an API key named {key.name!r} already exists", name=key.name
                ) from None

        await self._aio.submit(job)

    async def _change(self, sql: str, value: str) -> bool:
        async def job(db: Db) -> bool:
            return await _changed(db, sql, (value,)) > 0

        return await self._aio.submit(job)
