"""Completion callbacks delivered from the outbox: the server's background task that claims due
deliveries, makes one attempt at each through the sender, and records how it ended.

At least once: an attempt cut short by a stop or a crash is made again (under its same
`webhook-id`, which receivers use to drop repeats). With several replicas on one database each
delivery is claimed by one of them at a time (`CallbackOutbox.claim`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable

from core.callbacks import Delivery, attempt_outcome
from ports.callbacks import CallbackOutbox, CallbackSender

log = logging.getLogger("flux.callbacks")

# Seconds between two looks at the outbox when nothing is due sooner: a new delivery waits at
# most this long for its first attempt; each look is one indexed read.
POLL = 0.25
IN_FLIGHT = 8  # attempts under way at once, at most
LEASE = 60.0  # seconds a claimed delivery is ours: well past one attempt's time limit
TROUBLE_PAUSE = 2.0  # seconds to wait after the outbox itself failed


class CallbackDeliveries:
    def __init__(
        self,
        outbox: CallbackOutbox,
        sender: CallbackSender,
        *,
        in_flight: int = IN_FLIGHT,
        poll: float = POLL,
        lease: float = LEASE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._outbox = outbox
        self._sender = sender
        self._in_flight = max(1, in_flight)
        self._poll = poll
        self._lease = lease
        self._clock = clock
        self.owner = f"callbacks-{uuid.uuid4().hex[:12]}"
        self._attempts: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def start(self) -> None:
        """Start delivering in the background (what was owed before a restart included)."""
        if self._loop is None:
            self._loop = asyncio.create_task(self._run(), name="callback-deliveries")

    def wake(self) -> None:
        """Look at the outbox now rather than at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming; attempts under way are cut short and their leases freed, so the next
        start (this server's or another replica's) makes them again at once."""
        tasks = [t for t in (self._loop, *self._attempts) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._loop = None
        try:
            await asyncio.wait_for(self._outbox.release(self.owner), 5.0)
        except Exception:  # the leases then expire on their own
            log.warning("could not free the callback leases of %s", self.owner, exc_info=True)
        finally:
            await self._sender.close()

    async def _run(self) -> None:
        while True:
            self._wake.clear()  # before looking: an attempt ending meanwhile wakes the sleep
            try:
                wait = await self._turn()
            except Exception:
                log.exception("callback deliveries: the outbox failed; trying again shortly")
                wait = TROUBLE_PAUSE
            await self._sleep(wait)

    async def _turn(self) -> float:
        """Start the attempts that are due and fit; the seconds until it is worth looking
        again."""
        free = self._in_flight - len(self._attempts)
        if free <= 0:
            return self._poll  # an attempt ending wakes us sooner
        due = await self._outbox.next_due()
        now = self._clock()
        if due is None or due > now:
            return self._poll if due is None else min(self._poll, due - now)
        claimed = await self._outbox.claim(self.owner, limit=free, lease=self._lease, now=now)
        for delivery in claimed:
            task = asyncio.create_task(self._attempt(delivery))
            self._attempts.add(task)
            task.add_done_callback(self._ended)
        return 0.0 if len(claimed) == free else self._poll

    async def _attempt(self, delivery: Delivery) -> None:
        error = await self._sender.send(delivery)
        outcome = attempt_outcome(delivery, error, self._clock())
        if not await self._outbox.settle(self.owner, delivery.delivery_id, outcome):
            log.warning(
                "callback %s: its lease ended before the attempt was recorded", delivery.delivery_id
            )
        elif error is not None and outcome.next_at is None:
            log.warning(
                "callback %s of execution %s to %s: given up after %d attempts (last: %s)",
                delivery.delivery_id,
                delivery.execution_id,
                delivery.url,
                delivery.attempts + 1,
                error,
            )

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._attempts.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("callback attempt failed", exc_info=task.exception())
        self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
