"""Finding executions on SQLite (`ports.executions.ExecutionQueries`).

Newest first with keyset pagination: `(created_at, id) < (cursor)` and `ORDER BY created_at
DESC, id DESC`, which the listing indexes of migration 6 serve in index order (the planner
walks `executions_workflow_newest`, `executions_service_newest`, `executions_state_newest` or
`executions_newest` backwards from the cursor and stops after `limit` rows; see
tests/contract/test_queries.py for the plans checked).
"""

from __future__ import annotations

from typing import Any

from adapters.storage import text
from adapters.storage.batch_reader import BatchReader
from adapters.storage.sqlite import rows
from adapters.storage.sqlite.sql import marks, read_all
from core.listing import Cursor, ExecutionFilter
from core.model import Execution


def page_query(filter: ExecutionFilter, limit: int, after: Cursor | None) -> tuple[str, list[Any]]:
    """The statement of one page and its parameters (also what the plan tests EXPLAIN)."""
    where: list[str] = []
    params: list[Any] = []
    if filter.workflow is not None:
        where.append("namespace = ? AND name = ?")
        params += [filter.workflow.namespace, filter.workflow.name]
    if filter.namespace is not None:
        where.append("namespace = ?")
        params.append(filter.namespace)
    if filter.service is not None:
        where.append("service = ?")
        params.append(filter.service)
    if filter.states:
        states = sorted(str(state) for state in filter.states)
        where.append(f"state IN ({marks(states)})")
        params += states
    if after is not None:
        where.append("(created_at, id) < (?, ?)")
        params += [after.created_at, after.execution_id]
    sql = f"SELECT {rows.EXECUTION_COLUMNS} FROM executions"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql + " ORDER BY created_at DESC, id DESC LIMIT ?", [*params, max(0, limit)]


class SqliteQueries:
    def __init__(self, reader: BatchReader) -> None:
        self._reader = reader

    async def page(
        self, filter: ExecutionFilter, limit: int, after: Cursor | None = None
    ) -> list[Execution]:
        if not text.page_may_match(filter, after):
            return []
        sql, params = page_query(filter, limit, after)
        return [rows.execution_from_row(row) for row in await read_all(self._reader, sql, params)]
