"""Leases of worker processes on SQLite executions (`ports.executions.Leases`).

Every lease operation is one job on the writer, which shares the connection, and so the
transaction order, with the execution log: a lease check and the write it guards are never
apart. SQLite's write lock makes each job atomic against every other connection and process.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from adapters.storage import text
from adapters.storage.group_commit import GroupCommitWriter
from adapters.storage.local_signals import LocalSignals
from adapters.storage.sqlite import outbox, rows
from adapters.storage.sqlite.executions import signal_changes
from adapters.storage.sqlite.sql import (
    all_now,
    changed_now,
    insert_events,
    marks,
    one_now,
    write_for,
)
from adapters.storage.states import LEASABLE
from core.model import Execution, ExecutionEvent

_CLAIM = (
    "UPDATE executions SET lease_owner = ?, lease_until = ? WHERE id IN ("
    f"SELECT id FROM executions WHERE state IN {LEASABLE} "
    "AND (lease_until IS NULL OR lease_until < ?) "
    "ORDER BY created_at, id LIMIT ?) "
    f"RETURNING {rows.EXECUTION_COLUMNS}"
)
# A state that is no longer in progress ends the lease in the same statement.
_SAVE_OWNED = (
    f"UPDATE executions SET {rows.STATE_UPDATE}, "
    "lease_owner = CASE WHEN ? THEN lease_owner END, "
    "lease_until = CASE WHEN ? THEN lease_until END "
    f"WHERE id = ? AND lease_owner = ? AND state IN {LEASABLE}"
)


class SqliteLeases:
    def __init__(self, writer: GroupCommitWriter, signals: LocalSignals) -> None:
        self._writer = writer
        self._signals = signals

    async def claim(self, owner: str, *, limit: int, lease: float, now: float) -> list[Execution]:
        def job(db: sqlite3.Connection) -> list[Execution]:
            found = all_now(db, _CLAIM, (owner, now + lease, now, max(0, limit)))
            return [rows.execution_from_row(row) for row in found]

        claimed = await self._writer.submit(job)
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

        def job(db: sqlite3.Connection) -> list[str]:
            return [row[0] for row in all_now(db, sql, (now + lease, owner, *ids))]

        return await self._writer.submit(job)

    async def release(self, owner: str, execution_ids: Sequence[str]) -> None:
        ids = list(dict.fromkeys(execution_ids))
        if not ids:
            return
        sql = (
            "UPDATE executions SET lease_owner = NULL, lease_until = NULL "
            f"WHERE lease_owner = ? AND id IN ({marks(ids)})"
        )

        def job(db: sqlite3.Connection) -> bool:
            return changed_now(db, sql, (owner, *ids)) > 0

        if await self._writer.submit(job):
            self._signals.claimable()

    async def save_owned(
        self, owner: str, execution: Execution, events: Sequence[ExecutionEvent] = ()
    ) -> bool:
        text.check_execution(execution)
        text.check_events(events)
        *state, execution_id = rows.execution_state_params(execution)
        keep = execution.state.in_progress
        event_params = [rows.event_to_params(event) for event in events]

        def job(db: sqlite3.Connection) -> bool:
            before = outbox.prior(db, execution)
            if not changed_now(db, _SAVE_OWNED, (*state, keep, keep, execution_id, owner)):
                return False
            insert_events(db, event_params)
            outbox.keep(db, execution, before)  # a delivery owed commits with the state
            return True

        saved = await write_for(self._writer, job, execution_id)
        if saved:
            self._signals.changed(execution_id)
        return saved

    async def append_owned(self, owner: str, events: Sequence[ExecutionEvent]) -> bool:
        if not events:
            return True
        text.check_events(events)
        ids = sorted({event.execution_id for event in events})
        event_params = [rows.event_to_params(event) for event in events]
        sql = (
            f"SELECT COUNT(*) FROM executions WHERE id IN ({marks(ids)}) "
            f"AND lease_owner = ? AND state IN {LEASABLE}"
        )

        def job(db: sqlite3.Connection) -> bool:
            if one_now(db, sql, (*ids, owner))[0] != len(ids):
                return False
            insert_events(db, event_params)
            return True

        appended = await write_for(self._writer, job, ids[0])
        if appended:
            signal_changes(self._signals, events)
        return appended
