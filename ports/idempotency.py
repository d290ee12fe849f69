"""The port of idempotency keys: which execution a caller's `Idempotency-Key` stands for.

A mapping is (principal, key) -> (fingerprint of the request, execution id, when it was made).
Every adapter passes tests/contract/test_idempotency.py; the mapping is durable wherever the
adapter's executions are.
"""

from __future__ import annotations

from typing import Protocol

from attrs import frozen


@frozen
class Claimed:
    """The mapping a claim found or made. `won`: this very claim made it (its caller runs the
    request); otherwise an earlier request holds the key and this one replays it."""

    fingerprint: str
    execution_id: str
    created_at: float
    won: bool


class IdempotencyKeys(Protocol):
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
        """Map (principal, key) to (fingerprint, execution_id) made at `now`, atomically, unless
        a mapping made after `now - window` holds it already: then that one is returned as it
        is (`won` false). An older mapping has expired and is replaced. Of claims racing on one
        key, across processes too, exactly one wins."""

    async def release(self, principal: str, key: str, execution_id: str) -> None:
        """Forget the mapping if it still names `execution_id`: its request was refused before
        anything ran, and a retry (corrected, maybe) must run afresh."""

    async def purge(self, older_than: float) -> int:
        """Delete mappings made before `older_than` (epoch seconds); how many went."""
