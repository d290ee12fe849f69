"""Port of retention: deleting finished executions old enough to go (SPEC §9 "Retention").
Every adapter passes tests/contract/test_retention.py. (Expired idempotency keys go through
their own port's `purge`, ports/idempotency.py.)"""

from __future__ import annotations

from typing import Protocol


class Retention(Protocol):
    async def purge_finished(self, older_than: float, batch: int) -> int:
        """Delete up to `batch` executions that are COMPLETED, FAILED or CANCELLED and whose
        `updated_at` is before `older_than` (epoch seconds), oldest first, together with their
        event logs and callback deliveries; returns how many executions went. CREATED, RUNNING
        and PAUSED executions are never deleted, however old, nor is one that an idempotency key
        still names (a retry within the key's window must find its execution, not run it
        again): purge the expired keys first. Safe to call from several processes on one
        database at once: each execution is deleted (and counted) once."""
