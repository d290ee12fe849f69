"""Executions and their logs on PostgreSQL (`ports.executions.ExecutionLog`).

Every execution write also notifies, in its own transaction, so servers and workers listening
elsewhere wake at once when it commits (see `pg_signals`). Commits are synchronous
(PostgreSQL's default), so a call that returned is durable.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from adapters.storage import text
from adapters.storage.faults import for_execution
from adapters.storage.pg_signals import NOTIFY_CHANGED, notifying
from adapters.storage.postgres import outbox, rows
from adapters.storage.postgres.guard import GuardedPool
from adapters.storage.postgres.rows import EVENT_COLUMNS, EXECUTION_COLUMNS, STATE_UPDATE, affected
from adapters.storage.postgres.sql import (
    CREATE,
    WRITTEN,
    duplicate_event,
    execution_ids,
    insert_events,
)
from adapters.storage.states import UNFINISHED
from core.errors import AlreadyExists
from core.model import Execution, ExecutionEvent, ExecutionState, WorkflowRef

_SAVE = notifying(f"UPDATE executions SET {STATE_UPDATE} WHERE id = $1{WRITTEN}")
_SAVE_IF = notifying(
    f"UPDATE executions SET {STATE_UPDATE} WHERE id = $1 AND state = ANY($9::text[]){WRITTEN}"
)


class PostgresExecutionLog:
    def __init__(self, pool: GuardedPool) -> None:
        self._pool = pool

    async def create(self, execution: Execution) -> None:
        text.check_execution(execution)
        try:
            with for_execution(execution.execution_id):
                await self._pool.execute(CREATE, *rows.execution_values(execution))
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(
                f"execution {execution.execution_id!r} already exists",
                execution_id=execution.execution_id,
            ) from None

    async def save(self, execution: Execution, events: Sequence[ExecutionEvent] = ()) -> None:
        text.check_execution(execution)
        text.check_events(events)
        try:
            with for_execution(execution.execution_id):
                async with self._pool.acquire() as conn, conn.transaction():
                    before = await outbox.prior(conn, execution)
                    if not affected(await conn.execute(_SAVE, *rows.state_values(execution))):
                        # not stored yet: the whole row
                        await conn.execute(CREATE, *rows.execution_values(execution))
                    await insert_events(conn, events)
                    await outbox.keep(conn, execution, before)  # commits with the state
        except asyncpg.UniqueViolationError:
            raise duplicate_event() from None

    async def append(self, events: Sequence[ExecutionEvent]) -> None:
        if not events:
            return
        text.check_events(events)
        try:
            with for_execution(events[0].execution_id):
                async with self._pool.acquire() as conn, conn.transaction():
                    await insert_events(conn, events)
                    await conn.execute(NOTIFY_CHANGED, execution_ids(events))
        except asyncpg.UniqueViolationError:
            raise duplicate_event() from None

    async def get(self, execution_id: str) -> Execution | None:
        if not text.storable_text(execution_id):
            return None  # such an id is never stored
        row = await self._pool.fetchrow(
            f"SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = $1", execution_id
        )
        return None if row is None else rows.execution(tuple(row))

    async def events(self, execution_id: str) -> list[ExecutionEvent]:
        if not text.storable_text(execution_id):
            return []
        found = await self._pool.fetch(
            f"SELECT {EVENT_COLUMNS} FROM execution_events WHERE execution_id = $1 ORDER BY seq",
            execution_id,
        )
        return [rows.event(tuple(row)) for row in found]

    async def in_states(self, states: Sequence[ExecutionState]) -> list[Execution]:
        wanted = sorted({str(state) for state in states})
        if not wanted:
            return []
        found = await self._pool.fetch(
            f"SELECT {EXECUTION_COLUMNS} FROM executions WHERE state = ANY($1::text[]) "
            "ORDER BY created_at, id",
            wanted,
        )
        return [rows.execution(tuple(row)) for row in found]

    async def save_if(
        self,
        execution: Execution,
        events: Sequence[ExecutionEvent],
        expected: Sequence[ExecutionState],
    ) -> bool:
        text.check_execution(execution)
        text.check_events(events)
        wanted = sorted({str(state) for state in expected})
        try:
            with for_execution(execution.execution_id):
                async with self._pool.acquire() as conn, conn.transaction():
                    # The row lock of the UPDATE orders two racing writers: the second one
                    # reads the state the first one wrote, and writes nothing.
                    before = await outbox.prior(conn, execution)
                    status = await conn.execute(_SAVE_IF, *rows.state_values(execution), wanted)
                    if not affected(status):
                        return False
                    await insert_events(conn, events)
                    await outbox.keep(conn, execution, before)
        except asyncpg.UniqueViolationError:
            raise duplicate_event() from None
        return True

    async def overdue(self, now: float, limit: int) -> list[Execution]:
        found = await self._pool.fetch(
            f"SELECT {EXECUTION_COLUMNS} FROM executions WHERE deadline <= $1 "
            f"AND state IN {UNFINISHED} ORDER BY deadline, id LIMIT $2",
            now,
            max(0, limit),
        )
        return [rows.execution(tuple(row)) for row in found]

    async def unfinished(self, ref: WorkflowRef, version: int | None = None) -> list[str]:
        sql = (
            "SELECT id FROM executions WHERE namespace = $1 AND name = $2 "
            f"AND state IN {UNFINISHED}"
        )
        params: tuple[object, ...] = (ref.namespace, ref.name)
        if version is not None:
            sql, params = sql + " AND version = $3", (*params, version)
        found = await self._pool.fetch(sql + " ORDER BY created_at, id", *params)
        return [row[0] for row in found]
