"""SQLite storage: the embedded default behind the three storage ports.

Durability: WAL journal with `synchronous=NORMAL`. A commit is in the WAL when a call returns, so
it survives a crash or `kill -9` of the process; only an OS crash or power loss may drop the last
commits before a checkpoint (use `synchronous=FULL` if that matters more than write speed).

Connections: two plain `sqlite3` connections, each on a thread of its own and fed in batches
from the event loop (see `batching`), so no call blocks the loop and a batch costs one thread
hop however many statements it holds. ONE writer connection, behind the group-commit writer
(see `group_commit`), does every write, so concurrent service updates or execution saves never
race each other and many execution writes share one commit; it also applies the schema
migrations as it opens. The reader connection (see `batch_reader`) serves every read; WAL lets
it read while the writer writes. Each read is a snapshot of its own taken when its batch runs,
so a write is seen by any read asked after it returned, and the same statement asked by
concurrent callers in one batch runs once. `busy_timeout` covers other processes using the file.

Catalog caching: `revision()` is one primary-key read of the `meta` table (`SqliteRevisions`
reads both revisions in one statement, which every service call does); `snapshot()` answers
from a snapshot cached by revision and re-reads the catalog only when the revision moved, so a
register or delete by this or any other process is seen by the very next call.

Signals: once a group commit holding an execution write has committed, the write signals this
process's listeners (`signals`, see `local_signals`). Another process writing to the same file
signals nothing here: its writes are found by polling, as before.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from attrs import evolve

from adapters.storage import rows
from adapters.storage.api_keys import SqliteApiKeyStore
from adapters.storage.batch_reader import BatchReader
from adapters.storage.group_commit import GroupCommitWriter
from adapters.storage.local_signals import LocalSignals
from adapters.storage.migrations import migrate
from core.errors import AlreadyExists, ServiceNotFound
from core.model import (
    CatalogSnapshot,
    Execution,
    ExecutionEvent,
    ExecutionState,
    ServiceDefinition,
    WorkflowInfo,
    WorkflowRef,
    WorkflowVersion,
)
from ports.catalog import NewWorkflow, Registered

Clock = Callable[[], float]
BUSY_TIMEOUT_MS = 5000

_BUMP = "UPDATE meta SET value = value + 1 WHERE key = ?"
_LATEST = """
    SELECT w.namespace, w.name, w.version, w.input_schema, w.description
    FROM workflows w
    WHERE w.version = (
        SELECT MAX(x.version) FROM workflows x WHERE x.namespace = w.namespace AND x.name = w.name
    )
"""
# One statement reads the revision and the rows it belongs to (a statement is one read
# transaction); the LEFT JOIN keeps the revision row when the catalog is empty.
_SNAPSHOT = f"""
    SELECT m.value, l.namespace, l.name, l.version, l.input_schema, l.description
    FROM meta m LEFT JOIN ({_LATEST}) l ON 1
    WHERE m.key = 'catalog_revision'
    ORDER BY l.namespace, l.name
"""


_INSERT_EXECUTION = (
    f"INSERT INTO executions ({rows.EXECUTION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_LEASABLE = "('CREATED', 'RUNNING')"
# The answer says whether the saved execution is free for a worker to claim.
_SAVE_STATE = (
    f"UPDATE executions SET {rows.STATE_UPDATE} WHERE id = ? "
    f"RETURNING state IN {_LEASABLE} AND lease_owner IS NULL"
)
_REVISIONS = "SELECT key, value FROM meta WHERE key IN ('services_revision', 'catalog_revision')"

_PRAGMAS = (
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
)


def _connect(path: str, *pragmas: str) -> sqlite3.Connection:
    """A plain autocommit connection; opened on, and only ever used from, its owner's thread."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in (*_PRAGMAS, *pragmas):
        db.execute(pragma)
    return db


def _connect_writer(path: str) -> sqlite3.Connection:
    db = _connect(path)
    try:
        migrate(db)  # before anything else writes; each migration commits itself
    except BaseException:
        db.close()
        raise
    return db


def _connect_reader(path: str) -> sqlite3.Connection:
    # query_only keeps every write on the writer, where the group commit orders them.
    return _connect(path, "PRAGMA query_only = ON")


# A read is one reader job that fetches everything before it returns: a cursor left open would
# keep its read transaction, and so its snapshot, alive, and a commit made meanwhile would stay
# unseen by the reads after it.


async def _all(reader: BatchReader, sql: str, params: Sequence[Any] = ()) -> Sequence[Any]:
    return await reader.fetchall(sql, params)


async def _one(reader: BatchReader, sql: str, params: Sequence[Any] = ()) -> Any:
    found = await _all(reader, sql, params)
    return found[0] if found else None


# Reads inside a writer job: on the writer thread, within its transaction.


def _all_now(db: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    return db.execute(sql, params).fetchall()


def _one_now(db: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    return db.execute(sql, params).fetchone()


class SqliteRevisions:
    """Both revisions in one statement; the concurrent requests of a batch share its one run."""

    def __init__(self, reader: BatchReader) -> None:
        self._reader = reader

    async def current(self) -> tuple[int, int]:
        found = dict(await _all(self._reader, _REVISIONS))
        return found["services_revision"], found["catalog_revision"]


class SqliteCatalog:
    def __init__(self, reader: BatchReader, writer: GroupCommitWriter, clock: Clock):
        self._reader = reader
        self._writer = writer
        self._clock = clock
        self._snapshot = CatalogSnapshot(-1)

    async def register(self, workflows: Sequence[NewWorkflow]) -> list[Registered]:
        now = self._clock()

        def job(db: sqlite3.Connection) -> list[Registered]:
            results: list[Registered] = []
            for new in workflows:
                latest = _one_now(
                    db,
                    "SELECT namespace, name, version, input_schema, description, source_hash "
                    "FROM workflows WHERE namespace = ? AND name = ? "
                    "ORDER BY version DESC LIMIT 1",
                    (new.ref.namespace, new.ref.name),
                )
                if latest is not None and latest[5] == new.source_hash:
                    results.append(Registered(rows.info_from_row(latest[:5]), created=False))
                    continue
                info = WorkflowInfo(
                    new.ref,
                    latest[2] + 1 if latest else 1,
                    rows.load(rows.dump(new.input_schema)),
                    new.description,
                )
                db.execute(
                    "INSERT INTO workflows (namespace, name, version, source, source_hash, "
                    "input_schema, description, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        new.ref.namespace,
                        new.ref.name,
                        info.version,
                        new.source,
                        new.source_hash,
                        rows.dump(new.input_schema),
                        new.description,
                        now,
                    ),
                )
                results.append(Registered(info, created=True))
            if any(r.created for r in results):
                db.execute(_BUMP, ("catalog_revision",))
            return results

        return await self._writer.submit(job)

    async def revision(self) -> int:
        row = await _one(self._reader, "SELECT value FROM meta WHERE key = 'catalog_revision'")
        return row[0]

    async def snapshot(self) -> CatalogSnapshot:
        if await self.revision() == self._snapshot.revision:
            return self._snapshot
        found = await _all(self._reader, _SNAPSHOT)
        infos = tuple(rows.info_from_row(row[1:]) for row in found if row[1] is not None)
        snapshot = CatalogSnapshot(found[0][0], infos)
        # Two concurrent reloads may finish out of order; keep the newer one.
        if snapshot.revision >= self._snapshot.revision:
            self._snapshot = snapshot
        return snapshot

    async def get(self, ref: WorkflowRef, version: int | None = None) -> WorkflowVersion | None:
        sql = (
            "SELECT namespace, name, version, input_schema, description, source, source_hash, "
            "created_at FROM workflows WHERE namespace = ? AND name = ? "
        )
        if version is None:
            row = await _one(
                self._reader, sql + "ORDER BY version DESC LIMIT 1", (ref.namespace, ref.name)
            )
        else:
            row = await _one(
                self._reader, sql + "AND version = ?", (ref.namespace, ref.name, version)
            )
        if row is None:
            return None
        return WorkflowVersion(rows.info_from_row(row[:5]), row[5], row[6], row[7])

    async def versions(self, ref: WorkflowRef) -> list[WorkflowInfo]:
        found = await _all(
            self._reader,
            "SELECT namespace, name, version, input_schema, description FROM workflows "
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
        def job(db: sqlite3.Connection) -> int:
            sql = "DELETE FROM workflows WHERE namespace = ? AND name = ?"
            params: tuple[Any, ...] = (ref.namespace, ref.name)
            if version is not None:
                sql, params = sql + " AND version = ?", (*params, version)
            cursor = db.execute(sql, params)
            deleted = cursor.rowcount
            cursor.close()
            if deleted:
                db.execute(_BUMP, ("catalog_revision",))
            return deleted

        return await self._writer.submit(job)


class SqliteServiceStore:
    def __init__(self, reader: BatchReader, writer: GroupCommitWriter, clock: Clock):
        self._reader = reader
        self._writer = writer
        self._clock = clock

    async def create(self, service: ServiceDefinition) -> ServiceDefinition:
        now = self._clock()

        def job(db: sqlite3.Connection) -> ServiceDefinition:
            params = rows.service_to_params(service) | {"now": now}
            try:
                db.execute(
                    f"INSERT INTO services ({rows.SERVICE_COLUMNS}, created_at, updated_at) "
                    "VALUES (:name, :namespaces, :workflows, :exclusions, :mcp_enabled, "
                    ":revision, :now, :now)",
                    params,
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(
                    f"service {service.name!r} already exists", service=service.name
                ) from None
            db.execute(_BUMP, ("services_revision",))
            return service

        return await self._writer.submit(job)

    async def get(self, name: str) -> ServiceDefinition | None:
        row = await _one(
            self._reader, f"SELECT {rows.SERVICE_COLUMNS} FROM services WHERE name = ?", (name,)
        )
        return None if row is None else rows.service_from_row(row)

    async def list(self) -> list[ServiceDefinition]:
        found = await _all(
            self._reader, f"SELECT {rows.SERVICE_COLUMNS} FROM services ORDER BY name"
        )
        return [rows.service_from_row(row) for row in found]

    async def update(
        self, name: str, edit: Callable[[ServiceDefinition], ServiceDefinition]
    ) -> ServiceDefinition:
        def job(db: sqlite3.Connection) -> ServiceDefinition:
            # Read and write on the writer connection inside its transaction: nothing can
            # commit in between, which is what keeps concurrent edits from losing each other.
            row = _one_now(
                db, f"SELECT {rows.SERVICE_COLUMNS} FROM services WHERE name = ?", (name,)
            )
            if row is None:
                raise ServiceNotFound(f"service {name!r} not found", service=name)
            current = rows.service_from_row(row)
            updated = evolve(edit(current), name=name, revision=current.revision + 1)
            db.execute(
                "UPDATE services SET namespaces = :namespaces, workflows = :workflows, "
                "exclusions = :exclusions, mcp_enabled = :mcp_enabled, revision = :revision, "
                "updated_at = :now WHERE name = :name",
                rows.service_to_params(updated) | {"now": self._clock()},
            )
            db.execute(_BUMP, ("services_revision",))
            return updated

        return await self._writer.submit(job)

    async def delete(self, name: str) -> bool:
        def job(db: sqlite3.Connection) -> bool:
            cursor = db.execute("DELETE FROM services WHERE name = ?", (name,))
            deleted = cursor.rowcount > 0
            cursor.close()
            if deleted:
                db.execute(_BUMP, ("services_revision",))
            return deleted

        return await self._writer.submit(job)

    async def revision(self) -> int:
        row = await _one(self._reader, "SELECT value FROM meta WHERE key = 'services_revision'")
        return row[0]


class SqliteExecutionStore:
    def __init__(self, reader: BatchReader, writer: GroupCommitWriter, signals: LocalSignals):
        self._reader = reader
        self._writer = writer
        self._signals = signals

    async def create(self, execution: Execution) -> None:
        params = rows.execution_to_params(execution)

        def job(db: sqlite3.Connection) -> None:
            try:
                db.execute(_INSERT_EXECUTION, params)
            except sqlite3.IntegrityError:
                raise AlreadyExists(
                    f"execution {execution.execution_id!r} already exists",
                    execution_id=execution.execution_id,
                ) from None

        await self._writer.submit(job)
        self._signals.changed(execution.execution_id)
        if execution.state.in_progress:
            self._signals.claimable()

    async def save(self, execution: Execution, events: Sequence[ExecutionEvent] = ()) -> None:
        state = rows.execution_state_params(execution)
        event_params = [rows.event_to_params(event) for event in events]
        leasable = execution.state.in_progress

        def job(db: sqlite3.Connection) -> bool:
            saved = _all_now(db, _SAVE_STATE, state)
            if not saved:  # not stored yet: the whole row
                db.execute(_INSERT_EXECUTION, rows.execution_to_params(execution))
            _insert_events(db, event_params)
            return bool(saved[0][0]) if saved else leasable

        claimable = await self._writer.submit(job)
        self._signals.changed(execution.execution_id)
        if claimable:
            self._signals.claimable()

    async def append(self, events: Sequence[ExecutionEvent]) -> None:
        if not events:
            return
        event_params = [rows.event_to_params(event) for event in events]

        def job(db: sqlite3.Connection) -> None:
            _insert_events(db, event_params)

        await self._writer.submit(job)
        self._signal_changes(events)

    async def get(self, execution_id: str) -> Execution | None:
        row = await _one(
            self._reader,
            f"SELECT {rows.EXECUTION_COLUMNS} FROM executions WHERE id = ?",
            (execution_id,),
        )
        return None if row is None else rows.execution_from_row(row)

    async def events(self, execution_id: str) -> list[ExecutionEvent]:
        found = await _all(
            self._reader,
            f"SELECT {rows.EVENT_COLUMNS} FROM execution_events WHERE execution_id = ? "
            "ORDER BY seq",
            (execution_id,),
        )
        return [rows.event_from_row(row) for row in found]

    async def in_states(self, states: Sequence[ExecutionState]) -> list[Execution]:
        wanted = sorted({str(state) for state in states})
        if not wanted:
            return []
        marks = ", ".join("?" * len(wanted))
        found = await _all(
            self._reader,
            f"SELECT {rows.EXECUTION_COLUMNS} FROM executions WHERE state IN ({marks}) "
            "ORDER BY created_at, id",
            wanted,
        )
        return [rows.execution_from_row(row) for row in found]

    async def claim(self, owner: str, *, limit: int, lease: float, now: float) -> list[Execution]:
        def job(db: sqlite3.Connection) -> list[Execution]:
            # One statement inside the writer's transaction: SQLite's write lock makes it
            # atomic against every other connection and process.
            found = _all_now(
                db,
                "UPDATE executions SET lease_owner = ?, lease_until = ? WHERE id IN ("
                f"SELECT id FROM executions WHERE state IN {_LEASABLE} "
                "AND (lease_until IS NULL OR lease_until < ?) "
                "ORDER BY created_at, id LIMIT ?) "
                f"RETURNING {rows.EXECUTION_COLUMNS}",
                (owner, now + lease, now, max(0, limit)),
            )
            return [rows.execution_from_row(row) for row in found]

        claimed = await self._writer.submit(job)
        return sorted(claimed, key=lambda e: (e.created_at, e.execution_id))

    async def renew(
        self, owner: str, execution_ids: Sequence[str], *, lease: float, now: float
    ) -> list[str]:
        ids = list(dict.fromkeys(execution_ids))
        if not ids:
            return []

        def job(db: sqlite3.Connection) -> list[str]:
            found = _all_now(
                db,
                "UPDATE executions SET lease_until = ? WHERE lease_owner = ? "
                f"AND state IN {_LEASABLE} AND id IN ({', '.join('?' * len(ids))}) RETURNING id",
                (now + lease, owner, *ids),
            )
            return [row[0] for row in found]

        return await self._writer.submit(job)

    async def release(self, owner: str, execution_ids: Sequence[str]) -> None:
        ids = list(dict.fromkeys(execution_ids))
        if not ids:
            return

        def job(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE executions SET lease_owner = NULL, lease_until = NULL "
                f"WHERE lease_owner = ? AND id IN ({', '.join('?' * len(ids))})",
                (owner, *ids),
            )
            released = cursor.rowcount > 0
            cursor.close()
            return released

        if await self._writer.submit(job):
            self._signals.claimable()

    async def save_owned(
        self, owner: str, execution: Execution, events: Sequence[ExecutionEvent] = ()
    ) -> bool:
        *state, execution_id = rows.execution_state_params(execution)
        keep = execution.state.in_progress
        event_params = [rows.event_to_params(event) for event in events]

        def job(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                f"UPDATE executions SET {rows.STATE_UPDATE}, "
                "lease_owner = CASE WHEN ? THEN lease_owner END, "
                "lease_until = CASE WHEN ? THEN lease_until END "
                f"WHERE id = ? AND lease_owner = ? AND state IN {_LEASABLE}",
                (*state, keep, keep, execution_id, owner),
            )
            updated = cursor.rowcount
            cursor.close()
            if not updated:
                return False
            _insert_events(db, event_params)
            return True

        saved = await self._writer.submit(job)
        if saved:
            self._signals.changed(execution_id)
        return saved

    async def append_owned(self, owner: str, events: Sequence[ExecutionEvent]) -> bool:
        if not events:
            return True
        ids = sorted({event.execution_id for event in events})
        event_params = [rows.event_to_params(event) for event in events]

        def job(db: sqlite3.Connection) -> bool:
            row = _one_now(
                db,
                f"SELECT COUNT(*) FROM executions WHERE id IN ({', '.join('?' * len(ids))}) "
                f"AND lease_owner = ? AND state IN {_LEASABLE}",
                (*ids, owner),
            )
            if row[0] != len(ids):
                return False
            _insert_events(db, event_params)
            return True

        appended = await self._writer.submit(job)
        if appended:
            self._signal_changes(events)
        return appended

    def _signal_changes(self, events: Sequence[ExecutionEvent]) -> None:
        for execution_id in dict.fromkeys(event.execution_id for event in events):
            self._signals.changed(execution_id)


def _insert_events(db: sqlite3.Connection, event_params: list[tuple[Any, ...]]) -> None:
    if not event_params:
        return
    try:
        db.executemany(
            f"INSERT INTO execution_events ({rows.EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            event_params,
        )
    except sqlite3.IntegrityError:
        raise AlreadyExists("an event with this execution_id and seq already exists") from None


class SqliteStorage:
    """The storage ports over one SQLite file; build it with `await SqliteStorage.open()`."""

    def __init__(self, writer: GroupCommitWriter, reader: BatchReader, clock: Clock) -> None:
        self._reader = reader
        self._writer = writer
        self.catalog = SqliteCatalog(reader, writer, clock)
        self.services = SqliteServiceStore(reader, writer, clock)
        self.signals = LocalSignals()
        self.executions = SqliteExecutionStore(reader, writer, self.signals)
        self.leases = self.executions
        self.revisions = SqliteRevisions(reader)
        self.api_keys = SqliteApiKeyStore(reader, writer)

    @classmethod
    async def open(cls, path: str | Path, clock: Clock = time.time) -> SqliteStorage:
        """Open (creating if needed) the database file and apply pending migrations."""
        writer = await GroupCommitWriter.open(lambda: _connect_writer(str(path)))
        try:
            reader = await BatchReader.open(lambda: _connect_reader(str(path)))
        except BaseException:
            await writer.close()
            raise
        return cls(writer, reader, clock)

    async def ping(self) -> bool:
        try:
            return await _one(self._reader, "SELECT 1") == (1,)
        except Exception:
            return False

    async def close(self) -> None:
        await self._writer.close()
        await self._reader.close()
