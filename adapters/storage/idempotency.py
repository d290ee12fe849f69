"""The in-memory IdempotencyKeys: the twin that proves the contract (tests/contract/
test_idempotency.py), not for production use. The SQLite and PostgreSQL stores live with their
adapters (`sqlite/idempotency.py`, `postgres/idempotency.py`).

Each method reads and writes without awaiting in between, so on one event loop it is atomic.
"""

from __future__ import annotations

from ports.idempotency import Claimed


class MemoryIdempotencyKeys:
    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], Claimed] = {}

    async def claim(
        self,
        principal: str,
        key: str,
        fingerprint: str,
        execution_id: str,
        *,
        now: float,
        window: float,
    ) -> Claimed:
        held = self._keys.get((principal, key))
        if held is not None and held.created_at >= now - window:
            return held
        self._keys[(principal, key)] = Claimed(fingerprint, execution_id, now, won=False)
        return Claimed(fingerprint, execution_id, now, won=True)

    async def release(self, principal: str, key: str, execution_id: str) -> None:
        held = self._keys.get((principal, key))
        if held is not None and held.execution_id == execution_id:
            del self._keys[(principal, key)]

    def execution_ids(self) -> set[str]:
        """The executions that keys name (the retention purge keeps them)."""
        return {held.execution_id for held in self._keys.values()}

    async def purge(self, older_than: float) -> int:
        old = [name for name, held in self._keys.items() if held.created_at < older_than]
        for name in old:
            del self._keys[name]
        return len(old)
