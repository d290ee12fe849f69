"""PostgreSQL storage (asyncpg): the three storage ports for servers on more than one machine.

Every replica opens its own connection pool on the same database; the database is the only
shared state, so nothing here assumes it is the only writer:

- Revisions live in one row per kind (`revisions`). `revision()` reads that row (one primary-key
  query), so a register, delete or service edit made by any replica is seen by every replica's
  next call. `snapshot()` re-reads the catalog only when the revision moved, and reads revision
  and rows in one statement, so the two always belong together.
- Catalog writes first lock the catalog revision row, which puts registers from all replicas in
  one queue: two replicas registering the same workflow never compute the same next version.
- A service update reads its row with `SELECT ... FOR UPDATE` in the transaction that writes it,
  so concurrent edits from anywhere are applied one after the other and none is lost. Writes lock
  the service row before the revision row, always in that order, so they cannot deadlock.
- Unique violations (service name, execution id, event seq, API key name) become `AlreadyExists`.
- Execution input/output/error and event values are JSONB (queryable from SQL); note that JSONB
  keeps object keys in its own order, not the order they were written in. Input schemas are JSON
  (text kept as written) because their property order is what users see in generated docs.

Commits are synchronous (PostgreSQL's default), so a call that returned is durable.

Every execution write also notifies, in its own transaction, so servers and workers listening
elsewhere wake at once when it commits (see `pg_signals`, which also holds the one LISTEN
connection each storage opens for its `signals`). A lease claim or renewal notifies nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from attrs import evolve

from adapters.storage.pg_migrations import check_schema_name, migrate
from adapters.storage.pg_signals import LEASABLE, NOTIFY_CHANGED, PostgresSignals, notifying
from core.errors import AlreadyExists, ServiceNotFound
from core.model import (
    CatalogSnapshot,
    EventKind,
    Execution,
    ExecutionError,
    ExecutionEvent,
    ExecutionState,
    ServiceDefinition,
    WorkflowInfo,
    WorkflowRef,
    WorkflowVersion,
)
from ports.auth import ApiKey
from ports.catalog import NewWorkflow, Registered

Clock = Callable[[], float]
CLOSE_TIMEOUT = 10.0  # seconds close() waits for borrowed connections before cutting them
PING_TIMEOUT = 5.0
LISTENER_TIMEOUT = 5.0  # seconds the LISTEN connection may take to open or to answer

_INFO = "namespace, name, version, input_schema, description"
_LATEST = f"""
    SELECT DISTINCT ON (namespace, name) {_INFO}
    FROM workflows ORDER BY namespace, name, version DESC
"""
_SNAPSHOT = f"""
    SELECT r.value, l.namespace, l.name, l.version, l.input_schema, l.description
    FROM revisions r LEFT JOIN ({_LATEST}) l ON TRUE
    WHERE r.key = 'catalog'
    ORDER BY l.namespace, l.name
"""
_LOCK_REVISION = "SELECT value FROM revisions WHERE key = $1 FOR UPDATE"
_BUMP = "UPDATE revisions SET value = value + 1 WHERE key = $1"
_REVISION = "SELECT value FROM revisions WHERE key = $1"
_REVISIONS = "SELECT key, value FROM revisions WHERE key IN ('services', 'catalog')"

_SERVICE = "name, namespaces, workflows, exclusions, mcp_enabled, revision"
_EXECUTION = (
    "id, namespace, name, version, state, input, output, error, pause_name, created_at, updated_at"
)
_EVENT = "execution_id, seq, kind, key, value, at"
_INSERT_EXECUTION = (
    f"INSERT INTO executions ({_EXECUTION}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
)
# What a save writes: the state of a run, never what identifies it (ref, version, input, ...).
_STATE_UPDATE = "state = $2, output = $3, error = $4, pause_name = $5, updated_at = $6"
_SAVE_STATE = f"UPDATE executions SET {_STATE_UPDATE} WHERE id = $1"
_INSERT_EVENT = f"INSERT INTO execution_events ({_EVENT}) VALUES ($1, $2, $3, $4, $5, $6)"
# The execution writes, each one statement that also notifies listeners (see `pg_signals`).
_WRITTEN = " RETURNING id, state, lease_owner"
_CREATE = notifying(_INSERT_EXECUTION + _WRITTEN)
_SAVE = notifying(_SAVE_STATE + _WRITTEN)


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


async def _init_connection(conn: asyncpg.Connection) -> None:
    # JSON and JSONB columns take and give Python values; SQL NULL stays None.
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=_dump, decoder=json.loads, schema="pg_catalog", format="text"
        )


def _affected(status: str) -> int:
    """Row count of a command status such as 'DELETE 3' or 'UPDATE 1'."""
    return int(status.rsplit(" ", 1)[-1])


def _info(row: Sequence[Any]) -> WorkflowInfo:
    namespace, name, version, schema, description = row
    return WorkflowInfo(WorkflowRef(namespace, name), version, schema, description)


def _ref(text: str) -> WorkflowRef:
    namespace, _, name = text.rpartition("/")
    return WorkflowRef(namespace, name)


def _service(row: Sequence[Any]) -> ServiceDefinition:
    name, namespaces, workflows, exclusions, mcp_enabled, revision = row
    return ServiceDefinition(
        name=name,
        namespaces=tuple(namespaces),
        workflows=tuple(_ref(text) for text in workflows),
        exclusions=tuple(_ref(text) for text in exclusions),
        mcp_enabled=mcp_enabled,
        revision=revision,
    )


def _service_values(service: ServiceDefinition) -> tuple[Any, ...]:
    return (
        service.name,
        list(service.namespaces),
        [str(ref) for ref in service.workflows],
        [str(ref) for ref in service.exclusions],
        service.mcp_enabled,
        service.revision,
    )


def _state_values(execution: Execution) -> tuple[Any, ...]:
    """The values of `_STATE_UPDATE`, after the id ($1)."""
    error = execution.error
    return (
        execution.execution_id,
        str(execution.state),
        execution.output,
        None if error is None else error.as_json(),
        execution.pause_name,
        execution.updated_at,
    )


def _execution_values(execution: Execution) -> tuple[Any, ...]:
    error = execution.error
    return (
        execution.execution_id,
        execution.ref.namespace,
        execution.ref.name,
        execution.version,
        str(execution.state),
        execution.input,
        execution.output,
        None if error is None else error.as_json(),
        execution.pause_name,
        execution.created_at,
        execution.updated_at,
    )


def _execution(row: Sequence[Any]) -> Execution:
    (id_, namespace, name, version, state, input_, output, error, pause, created, updated) = row
    return Execution(
        execution_id=id_,
        ref=WorkflowRef(namespace, name),
        version=version,
        state=ExecutionState(state),
        input=input_,
        output=output,
        error=None if error is None else ExecutionError(error["type"], error["message"]),
        pause_name=pause,
        created_at=created,
        updated_at=updated,
    )


def _event_values(event: ExecutionEvent) -> tuple[Any, ...]:
    return (event.execution_id, event.seq, str(event.kind), event.key, event.value, event.at)


def _event(row: Sequence[Any]) -> ExecutionEvent:
    execution_id, seq, kind, key, value, at = row
    return ExecutionEvent(execution_id, seq, EventKind(kind), key, value, at)


class PostgresCatalog:
    def __init__(self, pool: asyncpg.Pool, clock: Clock) -> None:
        self._pool = pool
        self._clock = clock
        self._snapshot = CatalogSnapshot(-1)

    async def register(self, workflows: Sequence[NewWorkflow]) -> list[Registered]:
        now = self._clock()
        results: list[Registered] = []
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_LOCK_REVISION, "catalog")
            for new in workflows:
                latest = await conn.fetchrow(
                    f"SELECT {_INFO}, source_hash FROM workflows "
                    "WHERE namespace = $1 AND name = $2 ORDER BY version DESC LIMIT 1",
                    new.ref.namespace,
                    new.ref.name,
                )
                if latest is not None and latest["source_hash"] == new.source_hash:
                    results.append(Registered(_info(tuple(latest)[:5]), created=False))
                    continue
                info = WorkflowInfo(
                    new.ref,
                    latest["version"] + 1 if latest else 1,
                    # A copy through JSON: the caller gets back exactly what a read will give.
                    None if new.input_schema is None else json.loads(_dump(new.input_schema)),
                    new.description,
                )
                await conn.execute(
                    "INSERT INTO workflows (namespace, name, version, source, source_hash, "
                    "input_schema, description, created_at) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    new.ref.namespace,
                    new.ref.name,
                    info.version,
                    new.source,
                    new.source_hash,
                    new.input_schema,
                    new.description,
                    now,
                )
                results.append(Registered(info, created=True))
            if any(r.created for r in results):
                await conn.execute(_BUMP, "catalog")
        return results

    async def revision(self) -> int:
        return await self._pool.fetchval(_REVISION, "catalog")

    async def snapshot(self) -> CatalogSnapshot:
        if await self.revision() == self._snapshot.revision:
            return self._snapshot
        found = await self._pool.fetch(_SNAPSHOT)
        infos = tuple(_info(tuple(row)[1:]) for row in found if row["namespace"] is not None)
        snapshot = CatalogSnapshot(found[0]["value"], infos)
        # Two concurrent reloads may finish out of order; keep the newer one.
        if snapshot.revision >= self._snapshot.revision:
            self._snapshot = snapshot
        return snapshot

    async def get(self, ref: WorkflowRef, version: int | None = None) -> WorkflowVersion | None:
        sql = (
            f"SELECT {_INFO}, source, source_hash, created_at FROM workflows "
            "WHERE namespace = $1 AND name = $2 "
        )
        if version is None:
            row = await self._pool.fetchrow(
                sql + "ORDER BY version DESC LIMIT 1", ref.namespace, ref.name
            )
        else:
            row = await self._pool.fetchrow(
                sql + "AND version = $3", ref.namespace, ref.name, version
            )
        if row is None:
            return None
        values = tuple(row)
        return WorkflowVersion(_info(values[:5]), *values[5:])

    async def versions(self, ref: WorkflowRef) -> list[WorkflowInfo]:
        found = await self._pool.fetch(
            f"SELECT {_INFO} FROM workflows WHERE namespace = $1 AND name = $2 ORDER BY version",
            ref.namespace,
            ref.name,
        )
        return [_info(tuple(row)) for row in found]

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
            await conn.execute(_LOCK_REVISION, "catalog")
            deleted = _affected(await conn.execute(sql, *params))
            if deleted:
                await conn.execute(_BUMP, "catalog")
        return deleted


class PostgresServiceStore:
    def __init__(self, pool: asyncpg.Pool, clock: Clock) -> None:
        self._pool = pool
        self._clock = clock

    async def create(self, service: ServiceDefinition) -> ServiceDefinition:
        now = self._clock()
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    f"INSERT INTO services ({_SERVICE}, created_at, updated_at) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                    *_service_values(service),
                    now,
                )
                await conn.execute(_BUMP, "services")
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(
                f"service {service.name!r} already exists", service=service.name
            ) from None
        return service

    async def get(self, name: str) -> ServiceDefinition | None:
        row = await self._pool.fetchrow(f"SELECT {_SERVICE} FROM services WHERE name = $1", name)
        return None if row is None else _service(tuple(row))

    async def list(self) -> list[ServiceDefinition]:
        found = await self._pool.fetch(f"SELECT {_SERVICE} FROM services ORDER BY name")
        return [_service(tuple(row)) for row in found]

    async def update(
        self, name: str, edit: Callable[[ServiceDefinition], ServiceDefinition]
    ) -> ServiceDefinition:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT {_SERVICE} FROM services WHERE name = $1 FOR UPDATE", name
            )
            if row is None:
                raise ServiceNotFound(f"service {name!r} not found", service=name)
            current = _service(tuple(row))
            # The name is the key and the revision belongs to the store, whatever `edit` returns.
            updated = evolve(edit(current), name=name, revision=current.revision + 1)
            await conn.execute(
                "UPDATE services SET namespaces = $2, workflows = $3, exclusions = $4, "
                "mcp_enabled = $5, revision = $6, updated_at = $7 WHERE name = $1",
                *_service_values(updated),
                self._clock(),
            )
            await conn.execute(_BUMP, "services")
        return updated

    async def delete(self, name: str) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            deleted = _affected(await conn.execute("DELETE FROM services WHERE name = $1", name))
            if deleted:
                await conn.execute(_BUMP, "services")
        return deleted > 0

    async def revision(self) -> int:
        return await self._pool.fetchval(_REVISION, "services")


class PostgresExecutionStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(self, execution: Execution) -> None:
        try:
            await self._pool.execute(_CREATE, *_execution_values(execution))
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(
                f"execution {execution.execution_id!r} already exists",
                execution_id=execution.execution_id,
            ) from None

    async def save(self, execution: Execution, events: Sequence[ExecutionEvent] = ()) -> None:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                saved = await conn.execute(_SAVE, *_state_values(execution))
                if not _affected(saved):  # not stored yet: the whole row
                    await conn.execute(_CREATE, *_execution_values(execution))
                if events:
                    await conn.executemany(_INSERT_EVENT, [_event_values(e) for e in events])
        except asyncpg.UniqueViolationError:
            raise AlreadyExists("an event with this execution_id and seq already exists") from None

    async def append(self, events: Sequence[ExecutionEvent]) -> None:
        if not events:
            return
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.executemany(_INSERT_EVENT, [_event_values(e) for e in events])
                await conn.execute(NOTIFY_CHANGED, _execution_ids(events))
        except asyncpg.UniqueViolationError:
            raise AlreadyExists("an event with this execution_id and seq already exists") from None

    async def get(self, execution_id: str) -> Execution | None:
        row = await self._pool.fetchrow(
            f"SELECT {_EXECUTION} FROM executions WHERE id = $1", execution_id
        )
        return None if row is None else _execution(tuple(row))

    async def events(self, execution_id: str) -> list[ExecutionEvent]:
        found = await self._pool.fetch(
            f"SELECT {_EVENT} FROM execution_events WHERE execution_id = $1 ORDER BY seq",
            execution_id,
        )
        return [_event(tuple(row)) for row in found]

    async def in_states(self, states: Sequence[ExecutionState]) -> list[Execution]:
        wanted = sorted({str(state) for state in states})
        if not wanted:
            return []
        found = await self._pool.fetch(
            f"SELECT {_EXECUTION} FROM executions WHERE state = ANY($1::text[]) "
            "ORDER BY created_at, id",
            wanted,
        )
        return [_execution(tuple(row)) for row in found]

    async def claim(self, owner: str, *, limit: int, lease: float, now: float) -> list[Execution]:
        # SKIP LOCKED: concurrent claimers pass over each other's rows instead of queueing on
        # them, so each gets a different batch.
        found = await self._pool.fetch(
            "UPDATE executions SET lease_owner = $1, lease_until = $2 WHERE id IN ("
            f"SELECT id FROM executions WHERE state IN {LEASABLE} "
            "AND (lease_until IS NULL OR lease_until < $3) "
            "ORDER BY created_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) "
            f"RETURNING {_EXECUTION}",
            owner,
            now + lease,
            now,
            max(0, limit),
        )
        claimed = [_execution(tuple(row)) for row in found]
        return sorted(claimed, key=lambda e: (e.created_at, e.execution_id))

    async def renew(
        self, owner: str, execution_ids: Sequence[str], *, lease: float, now: float
    ) -> list[str]:
        if not execution_ids:
            return []
        found = await self._pool.fetch(
            "UPDATE executions SET lease_until = $1 WHERE lease_owner = $2 "
            f"AND state IN {LEASABLE} AND id = ANY($3::text[]) RETURNING id",
            now + lease,
            owner,
            list(dict.fromkeys(execution_ids)),
        )
        return [row["id"] for row in found]

    async def release(self, owner: str, execution_ids: Sequence[str]) -> None:
        if execution_ids:
            await self._pool.execute(
                notifying(
                    "UPDATE executions SET lease_owner = NULL, lease_until = NULL "
                    f"WHERE lease_owner = $1 AND id = ANY($2::text[]){_WRITTEN}",
                    changed=False,  # only who leases it changed: no state, no log
                ),
                owner,
                list(dict.fromkeys(execution_ids)),
            )

    async def save_owned(
        self, owner: str, execution: Execution, events: Sequence[ExecutionEvent] = ()
    ) -> bool:
        keep = execution.state.in_progress
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                # The row lock this UPDATE takes orders it against a concurrent claim: either
                # the claim sees the new state, or this sees the new owner and writes nothing.
                status = await conn.execute(
                    notifying(
                        f"UPDATE executions SET {_STATE_UPDATE}, "
                        "lease_owner = CASE WHEN $8 THEN lease_owner END, "
                        "lease_until = CASE WHEN $8 THEN lease_until END "
                        f"WHERE id = $1 AND lease_owner = $7 AND state IN {LEASABLE}{_WRITTEN}"
                    ),
                    *_state_values(execution),
                    owner,
                    keep,
                )
                if not _affected(status):
                    return False
                if events:
                    await conn.executemany(_INSERT_EVENT, [_event_values(e) for e in events])
        except asyncpg.UniqueViolationError:
            raise AlreadyExists("an event with this execution_id and seq already exists") from None
        return True

    async def append_owned(self, owner: str, events: Sequence[ExecutionEvent]) -> bool:
        if not events:
            return True
        ids = sorted({event.execution_id for event in events})
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                # FOR SHARE holds off a takeover until these events are committed, so the new
                # owner's replay reads them.
                held = await conn.fetch(
                    "SELECT id FROM executions WHERE id = ANY($1::text[]) AND lease_owner = $2 "
                    f"AND state IN {LEASABLE} FOR SHARE",
                    ids,
                    owner,
                )
                if len(held) != len(ids):
                    return False
                await conn.executemany(_INSERT_EVENT, [_event_values(e) for e in events])
                await conn.execute(NOTIFY_CHANGED, ids)
        except asyncpg.UniqueViolationError:
            raise AlreadyExists("an event with this execution_id and seq already exists") from None
        return True


def _execution_ids(events: Sequence[ExecutionEvent]) -> list[str]:
    return list(dict.fromkeys(event.execution_id for event in events))


_API_KEY = "key_id, name, permissions, revoked, created_at"


def _api_key(row: Sequence[Any]) -> ApiKey:
    key_id, name, permissions, revoked, created_at = row
    return ApiKey(
        key_id=key_id,
        name=name,
        permissions=frozenset(permissions),
        revoked=revoked,
        created_at=created_at,
    )


class PostgresApiKeyStore:
    """`ports.auth.ApiKeyStore` on the `api_keys` table: hashed secrets only."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def add(self, key: ApiKey, secret_hash: str) -> None:
        try:
            await self._pool.execute(
                f"INSERT INTO api_keys ({_API_KEY}, secret_hash) VALUES ($1, $2, $3, $4, $5, $6)",
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
        row = await self._pool.fetchrow(
            f"SELECT {_API_KEY} FROM api_keys WHERE secret_hash = $1", secret_hash
        )
        return None if row is None else _api_key(tuple(row))

    async def get(self, key_id: str) -> ApiKey | None:
        row = await self._pool.fetchrow(
            f"SELECT {_API_KEY} FROM api_keys WHERE key_id = $1", key_id
        )
        return None if row is None else _api_key(tuple(row))

    async def list(self) -> list[ApiKey]:
        found = await self._pool.fetch(f"SELECT {_API_KEY} FROM api_keys ORDER BY name")
        return [_api_key(tuple(row)) for row in found]

    async def revoke(self, key_id: str) -> bool:
        status = await self._pool.execute(
            "UPDATE api_keys SET revoked = TRUE WHERE key_id = $1", key_id
        )
        return _affected(status) > 0

    async def delete(self, key_id: str) -> bool:
        status = await self._pool.execute("DELETE FROM api_keys WHERE key_id = $1", key_id)
        return _affected(status) > 0


class PostgresRevisions:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def current(self) -> tuple[int, int]:
        found = dict(await self._pool.fetch(_REVISIONS))
        return found["services"], found["catalog"]


class PostgresStorage:
    """The storage ports over one PostgreSQL database; build it with `await PostgresStorage.open()`.

    Attributes: `catalog`, `services`, `executions`, `revisions` (ports/) and
    `api_keys` (ports/auth.py), all sharing one connection pool, and `signals`
    (ports/), which opens one more connection of its own when first used.
    """

    def __init__(self, pool: asyncpg.Pool, clock: Clock, signals: PostgresSignals) -> None:
        self._pool = pool
        self.signals = signals
        self.catalog = PostgresCatalog(pool, clock)
        self.services = PostgresServiceStore(pool, clock)
        self.executions = PostgresExecutionStore(pool)
        self.leases = self.executions
        self.revisions = PostgresRevisions(pool)
        self.api_keys = PostgresApiKeyStore(pool)

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        command_timeout: float | None = 60.0,
        clock: Clock = time.time,
    ) -> PostgresStorage:
        """Connect a pool to `dsn` (`postgresql://user:pass@host:port/db`) and apply pending
        migrations. `schema` keeps Flux's tables in that schema (created if missing) instead of
        the user's default one, so several deployments or test runs can share a database."""
        settings = {"application_name": "flux"}
        if schema is not None:
            settings["search_path"] = check_schema_name(schema)
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            command_timeout=command_timeout,
            init=_init_connection,
            server_settings=settings,
        )
        try:
            async with pool.acquire() as conn:
                await migrate(conn, schema=schema)
                scope = await conn.fetchval("SELECT current_schema()")
        except BaseException:
            pool.terminate()
            raise

        def connect_listener() -> Awaitable[asyncpg.Connection]:
            return asyncpg.connect(
                dsn,
                timeout=LISTENER_TIMEOUT,
                command_timeout=LISTENER_TIMEOUT,
                server_settings={**settings, "application_name": "flux-listener"},
            )

        return cls(pool, clock, PostgresSignals(connect_listener, scope))

    async def ping(self) -> bool:
        try:
            return await self._pool.fetchval("SELECT 1", timeout=PING_TIMEOUT) == 1
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            return False

    async def close(self) -> None:
        """Wait for borrowed connections to come back (bounded), then close them all."""
        await self.signals.close()
        try:
            await asyncio.wait_for(self._pool.close(), CLOSE_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(Exception):
                self._pool.terminate()
