"""Executions and their logs on SQLite (`ports.executions.ExecutionLog`).

Once the group commit holding an execution write has committed, the write signals this
process's listeners (see `local_signals`). Another process writing to the same file signals
nothing here: its writes are found by polling.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from adapters.storage import text
from adapters.storage.batch_reader import BatchReader
from adapters.storage.group_commit import GroupCommitWriter
from adapters.storage.local_signals import LocalSignals
from adapters.storage.sqlite import outbox, rows
from adapters.storage.sqlite.sql import (
    INSERT_EXECUTION,
    all_now,
    insert_events,
    marks,
    read_all,
    read_one,
    write_for,
)
from adapters.storage.states import LEASABLE, UNFINISHED
from core.errors import AlreadyExists
from core.model import Execution, ExecutionEvent, ExecutionState, WorkflowRef

# The answer says whether the saved execution is free for a worker to claim.
_SAVE_STATE = (
    f"UPDATE executions SET {rows.STATE_UPDATE} WHERE id = ? "
    f"RETURNING state IN {LEASABLE} AND lease_owner IS NULL"
)


class SqliteExecutionLog:
    def __init__(self, reader: BatchReader, writer: GroupCommitWriter, signals: LocalSignals):
        self._reader = reader
        self._writer = writer
        self._signals = signals

    async def create(self, execution: Execution) -> None:
        text.check_execution(execution)
        params = rows.execution_to_params(execution)

        def job(db: sqlite3.Connection) -> None:
            try:
                db.execute(INSERT_EXECUTION, params)
            except sqlite3.IntegrityError:
                raise AlreadyExists(
                    f"execution {execution.execution_id!r} already exists",
                    execution_id=execution.execution_id,
                ) from None

        await write_for(self._writer, job, execution.execution_id)
        self._signals.changed(execution.execution_id)
        if execution.state.in_progress:
            self._signals.claimable()

    async def save(self, execution: Execution, events: Sequence[ExecutionEvent] = ()) -> None:
        text.check_execution(execution)
        text.check_events(events)
        state = rows.execution_state_params(execution)
        event_params = [rows.event_to_params(event) for event in events]
        leasable = execution.state.in_progress

        def job(db: sqlite3.Connection) -> bool:
            before = outbox.prior(db, execution)
            saved = all_now(db, _SAVE_STATE, state)
            if not saved:  # not stored yet: the whole row
                db.execute(INSERT_EXECUTION, rows.execution_to_params(execution))
            insert_events(db, event_params)
            outbox.keep(db, execution, before)  # a delivery owed commits with the state
            return bool(saved[0][0]) if saved else leasable

        claimable = await write_for(self._writer, job, execution.execution_id)
        self._signals.changed(execution.execution_id)
        if claimable:
            self._signals.claimable()

    async def append(self, events: Sequence[ExecutionEvent]) -> None:
        if not events:
            return
        text.check_events(events)
        event_params = [rows.event_to_params(event) for event in events]

        def job(db: sqlite3.Connection) -> None:
            insert_events(db, event_params)

        await write_for(self._writer, job, events[0].execution_id)
        signal_changes(self._signals, events)

    async def get(self, execution_id: str) -> Execution | None:
        if not text.storable_text(execution_id):
            return None  # such an id is never stored
        row = await read_one(
            self._reader,
            f"SELECT {rows.EXECUTION_COLUMNS} FROM executions WHERE id = ?",
            (execution_id,),
        )
        return None if row is None else rows.execution_from_row(row)

    async def events(self, execution_id: str) -> list[ExecutionEvent]:
        if not text.storable_text(execution_id):
            return []
        found = await read_all(
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
        found = await read_all(
            self._reader,
            f"SELECT {rows.EXECUTION_COLUMNS} FROM executions WHERE state IN ({marks(wanted)}) "
            "ORDER BY created_at, id",
            wanted,
        )
        return [rows.execution_from_row(row) for row in found]

    async def save_if(
        self,
        execution: Execution,
        events: Sequence[ExecutionEvent],
        expected: Sequence[ExecutionState],
    ) -> bool:
        text.check_execution(execution)
        text.check_events(events)
        wanted = sorted({str(state) for state in expected})
        if not wanted:
            return False
        *state, execution_id = rows.execution_state_params(execution)
        event_params = [rows.event_to_params(event) for event in events]
        sql = (
            f"UPDATE executions SET {rows.STATE_UPDATE} WHERE id = ? AND state IN "
            f"({marks(wanted)}) RETURNING state IN {LEASABLE} AND lease_owner IS NULL"
        )

        def job(db: sqlite3.Connection) -> bool | None:
            # One job: the state check and the write share the writer's transaction.
            before = outbox.prior(db, execution)
            saved = all_now(db, sql, (*state, execution_id, *wanted))
            if not saved:
                return None
            insert_events(db, event_params)
            outbox.keep(db, execution, before)
            return bool(saved[0][0])

        claimable = await write_for(self._writer, job, execution_id)
        if claimable is None:
            return False
        self._signals.changed(execution_id)
        if claimable:
            self._signals.claimable()
        return True

    async def overdue(self, now: float, limit: int) -> list[Execution]:
        found = await read_all(
            self._reader,
            f"SELECT {rows.EXECUTION_COLUMNS} FROM executions WHERE deadline <= ? "
            f"AND state IN {UNFINISHED} ORDER BY deadline, id LIMIT ?",
            (now, max(0, limit)),
        )
        return [rows.execution_from_row(row) for row in found]

    async def unfinished(self, ref: WorkflowRef, version: int | None = None) -> list[str]:
        sql = (
            f"SELECT id FROM executions WHERE namespace = ? AND name = ? AND state IN {UNFINISHED}"
        )
        params: tuple[object, ...] = (ref.namespace, ref.name)
        if version is not None:
            sql, params = sql + " AND version = ?", (*params, version)
        found = await read_all(self._reader, sql + " ORDER BY created_at, id", params)
        return [row[0] for row in found]


def signal_changes(signals: LocalSignals, events: Sequence[ExecutionEvent]) -> None:
    """Tell the listeners of each execution these (committed) events belong to."""
    for execution_id in dict.fromkeys(event.execution_id for event in events):
        signals.changed(execution_id)
