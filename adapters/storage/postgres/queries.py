"""Finding executions on PostgreSQL (`ports.executions.ExecutionQueries`).

Newest first with keyset pagination: `(created_at, id) < (cursor)` (a row comparison, which
PostgreSQL matches against a btree index as one range) and `ORDER BY created_at DESC, id DESC`,
served backwards by the listing indexes of migration 4, stopping after `limit` rows; see
tests/contract/test_queries.py for the plans checked.
"""

from __future__ import annotations

from typing import Any

from adapters.storage import text
from adapters.storage.postgres import rows
from adapters.storage.postgres.guard import GuardedPool
from adapters.storage.postgres.rows import EXECUTION_COLUMNS
from core.listing import Cursor, ExecutionFilter
from core.model import Execution


def page_query(filter: ExecutionFilter, limit: int, after: Cursor | None) -> tuple[str, list[Any]]:
    """The statement of one page and its parameters (also what the plan tests EXPLAIN)."""
    where: list[str] = []
    params: list[Any] = []

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    if filter.workflow is not None:
        namespace, name = param(filter.workflow.namespace), param(filter.workflow.name)
        where.append(f"namespace = {namespace} AND name = {name}")
    if filter.namespace is not None:
        where.append(f"namespace = {param(filter.namespace)}")
    if filter.service is not None:
        where.append(f"service = {param(filter.service)}")
    if filter.states:
        where.append(f"state = ANY({param(sorted(str(s) for s in filter.states))}::text[])")
    if after is not None:
        created_at, execution_id = param(after.created_at), param(after.execution_id)
        where.append(f"(created_at, id) < ({created_at}::double precision, {execution_id})")
    sql = f"SELECT {EXECUTION_COLUMNS} FROM executions"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql + f" ORDER BY created_at DESC, id DESC LIMIT {param(max(0, limit))}", params


class PostgresQueries:
    def __init__(self, pool: GuardedPool) -> None:
        self._pool = pool

    async def page(
        self, filter: ExecutionFilter, limit: int, after: Cursor | None = None
    ) -> list[Execution]:
        if not text.page_may_match(filter, after):
            return []
        sql, params = page_query(filter, limit, after)
        return [rows.execution(tuple(row)) for row in await self._pool.fetch(sql, *params)]
