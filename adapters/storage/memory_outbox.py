"""The callback outbox over a dict: the memory twin of `adapters/storage/sqlite/outbox.py`.

The memory execution store calls `keep` from its `save` with no await in between, so on one
event loop a state and the delivery telling it are stored together, as the databases commit
them in one transaction.
"""

from __future__ import annotations

from attrs import evolve

from adapters.storage.outbox import Prior, looks_at, not_stored, owed
from core.callbacks import Attempt, Delivery
from core.model import Execution


class MemoryOutbox:
    def __init__(self) -> None:
        self._deliveries: dict[str, Delivery] = {}
        self._leases: dict[str, tuple[str, float]] = {}  # delivery id -> (owner, until)

    def keep(self, execution: Execution, existing: Execution | None) -> None:
        """After a save of `execution` over `existing` (None: not stored before): store the
        delivery it owes, if any."""
        if not looks_at(execution):  # the rule of the database adapters
            return
        if existing is None:
            before = not_stored(execution)
        else:
            before = Prior(existing.state, existing.callback_url, existing.service)
        delivery = owed(execution, before)
        if delivery is not None:
            self._deliveries[delivery.delivery_id] = delivery

    def forget(self, execution_ids: set[str]) -> None:
        """Drop the deliveries of these executions (they are purged)."""
        for delivery in list(self._deliveries.values()):
            if delivery.execution_id in execution_ids:
                del self._deliveries[delivery.delivery_id]
                self._leases.pop(delivery.delivery_id, None)

    async def next_due(self) -> float | None:
        return min(
            (
                max(d.next_at, self._leases.get(d.delivery_id, ("", d.next_at))[1])
                for d in self._owed()
            ),
            default=None,
        )

    async def claim(self, owner: str, *, limit: int, lease: float, now: float) -> list[Delivery]:
        free = [
            d
            for d in self._owed()
            if d.next_at <= now and self._leases.get(d.delivery_id, ("", 0.0))[1] < now
        ]
        taken = sorted(free, key=lambda d: (d.next_at, d.delivery_id))[: max(0, limit)]
        for delivery in taken:
            self._leases[delivery.delivery_id] = (owner, now + lease)
        return taken

    async def settle(self, owner: str, delivery_id: str, attempt: Attempt) -> bool:
        held = self._leases.get(delivery_id)
        delivery = self._deliveries.get(delivery_id)
        if held is None or held[0] != owner or delivery is None:
            return False
        del self._leases[delivery_id]
        failed = attempt.error is not None
        self._deliveries[delivery_id] = evolve(
            delivery,
            attempts=delivery.attempts + 1,
            delivered_at=None if failed else attempt.at,
            last_error=attempt.error if failed else delivery.last_error,
            next_at=attempt.next_at if attempt.next_at is not None else delivery.next_at,
            gave_up_at=attempt.at if failed and attempt.next_at is None else None,
        )
        return True

    async def release(self, owner: str) -> None:
        for delivery_id in [i for i, (held, _) in self._leases.items() if held == owner]:
            del self._leases[delivery_id]

    async def deliveries(self, execution_id: str) -> list[Delivery]:
        found = [d for d in self._deliveries.values() if d.execution_id == execution_id]
        return sorted(found, key=lambda d: (d.created_at, d.delivery_id))

    def _owed(self) -> list[Delivery]:
        return [
            d for d in self._deliveries.values() if d.delivered_at is None and d.gave_up_at is None
        ]
