"""Finding executions in the in-memory twin (`ports.executions.ExecutionQueries`): a scan of
every execution, sorted, since the twin only ever holds what a test stored."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from adapters.storage import text
from core.listing import Cursor, ExecutionFilter, newest_first
from core.model import Execution


class MemoryQueries:
    def __init__(self, executions: Callable[[], Iterable[Execution]]) -> None:
        self._executions = executions

    async def page(
        self, filter: ExecutionFilter, limit: int, after: Cursor | None = None
    ) -> list[Execution]:
        texts = (filter.namespace, filter.service, None if after is None else after.execution_id)
        if not all(text.storable_text(value) for value in texts):
            return []  # as the other adapters answer: such text is never stored
        kept = (
            execution
            for execution in self._executions()
            if filter.keeps(execution) and (after is None or after.precedes(execution))
        )
        return newest_first(kept)[: max(0, limit)]
