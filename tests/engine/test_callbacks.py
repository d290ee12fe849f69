"""The delivery loop of completion callbacks (engine/callbacks.py) over the memory outbox, with a
sender of our own: retries under one id, a bounded number in flight, a stop that frees leases."""

from __future__ import annotations

import asyncio
import time

from attrs import evolve

from adapters.storage.memory import MemoryStorage
from core.callbacks import Delivery
from core.model import Execution, ExecutionState, WorkflowRef
from engine.callbacks import CallbackDeliveries


class Sender:
    def __init__(self, answers: list[str | None] | None = None, gate: asyncio.Event | None = None):
        self.answers = answers or []
        self.gate = gate
        self.sent: list[Delivery] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.closed = False

    async def send(self, delivery: Delivery) -> str | None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            self.sent.append(delivery)
            return self.answers.pop(0) if self.answers else None
        finally:
            self.in_flight -= 1

    async def close(self) -> None:
        self.closed = True


async def finished(storage: MemoryStorage, count: int) -> None:
    now = time.time()
    for i in range(count):
        e = Execution(
            f"e{i}",
            WorkflowRef("a", "w"),
            1,
            ExecutionState.RUNNING,
            created_at=now,
            updated_at=now,
            callback_url="https://hooks.test/",
        )
        await storage.executions.create(e)
        await storage.executions.save(evolve(e, state=ExecutionState.COMPLETED))


async def until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


async def test_a_failed_attempt_is_tried_again_under_the_same_id_until_delivered():
    storage = MemoryStorage()
    await finished(storage, 1)
    sender = Sender(["HTTP 500", None])
    loop = CallbackDeliveries(storage.outbox, sender, poll=0.05)
    loop.start()
    try:
        assert await until(lambda: len(sender.sent) == 2)
        await asyncio.sleep(0.05)  # the second attempt recorded
        (d,) = await storage.outbox.deliveries("e0")
        assert {s.delivery_id for s in sender.sent} == {d.delivery_id}
        assert d.attempts == 2 and d.delivered_at is not None and d.last_error == "HTTP 500"
        assert await storage.outbox.next_due() is None
        times = [s.next_at for s in sender.sent]
        assert 0.9 < times[1] - times[0] < 1.5  # tried again a second later
    finally:
        await loop.stop()
    assert sender.closed


async def test_no_more_attempts_are_under_way_than_the_bound():
    storage = MemoryStorage()
    await finished(storage, 12)
    gate = asyncio.Event()
    sender = Sender(gate=gate)
    loop = CallbackDeliveries(storage.outbox, sender, in_flight=3, poll=0.02)
    loop.start()
    try:
        assert await until(lambda: sender.in_flight == 3)
        await asyncio.sleep(0.1)
        assert sender.in_flight == 3
        gate.set()
        assert await until(lambda: len(sender.sent) == 12)
        assert sender.most_in_flight == 3
    finally:
        await loop.stop()


async def test_a_stop_cuts_attempts_short_and_frees_their_leases_at_once():
    storage = MemoryStorage()
    await finished(storage, 2)
    sender = Sender(gate=asyncio.Event())  # never answers
    loop = CallbackDeliveries(storage.outbox, sender, poll=0.02)
    loop.start()
    assert await until(lambda: sender.in_flight == 2)
    await loop.stop()
    taken = await storage.outbox.claim("next", limit=10, lease=30, now=time.time())
    assert len(taken) == 2 and all(d.attempts == 0 for d in taken)
