"""Ports of completion callbacks: the durable outbox of deliveries (every storage adapter passes
tests/contract/test_outbox.py) and the sender that makes one attempt.

Deliveries are written by the storage itself, in the transaction of the save that moves an
execution to COMPLETED, FAILED, CANCELLED or PAUSED (see `core.callbacks.notifies`); nobody
adds one through this port.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from core.callbacks import Attempt, Delivery


class CallbackOutbox(Protocol):
    async def next_due(self) -> float | None:
        """When a delivery still owed (neither delivered nor given up) may next be claimed: the
        earliest `next_at`, or the end of its lease when it is held past that; None: none is
        owed. A sender that sees a time to come need not claim before it."""

    async def claim(self, owner: str, *, limit: int, lease: float, now: float) -> list[Delivery]:
        """Take up to `limit` due deliveries (`next_at <= now`) whose lease is free or expired,
        for `lease` seconds, oldest due first. Two owners never hold the same one."""

    async def settle(self, owner: str, delivery_id: str, attempt: Attempt) -> bool:
        """Record the end of an attempt by `owner` (attempts + 1, its outcome) and free the
        lease; False, writing nothing, when `owner` no longer holds it."""

    async def release(self, owner: str) -> None:
        """Free every lease `owner` holds: its attempts stopped, due again at once."""

    async def deliveries(self, execution_id: str) -> Sequence[Delivery]:
        """The execution's deliveries, oldest first."""


class CallbackSender(Protocol):
    async def send(self, delivery: Delivery) -> str | None:
        """One attempt: None when the receiver answered 2xx, else why not (bounded in time,
        never raising for the receiver's or the network's faults)."""

    async def close(self) -> None:
        """Let go of its connections; no attempt is made after."""
