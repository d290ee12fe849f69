"""Retention in the in-memory twin (`ports.retention.Retention`): the same choice of executions
as the SQLite and PostgreSQL adapters; the store's `forget` drops them with their logs, leases
and callback deliveries."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.model import ExecutionState

if TYPE_CHECKING:  # memory.py imports this module
    from adapters.storage.idempotency import MemoryIdempotencyKeys
    from adapters.storage.memory import MemoryExecutionStore

FINAL_STATES = tuple(state for state in ExecutionState if state.is_final)


class MemoryRetention:
    def __init__(self, store: MemoryExecutionStore, keys: MemoryIdempotencyKeys) -> None:
        self._store = store
        self._keys = keys

    async def purge_finished(self, older_than: float, batch: int) -> int:
        finished = await self._store.in_states(FINAL_STATES)
        keyed = self._keys.execution_ids()  # a retry within a key's window finds its execution
        old = sorted(
            (e for e in finished if e.updated_at < older_than and e.execution_id not in keyed),
            key=lambda e: e.updated_at,
        )
        doomed = [e.execution_id for e in old[: max(0, batch)]]
        self._store.forget(doomed)
        return len(doomed)
