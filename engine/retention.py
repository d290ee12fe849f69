"""Retention (SPEC §9): finished executions older than `retention_days` and idempotency keys
past their window are deleted, in the background and by hand.

The background purge runs shortly after the server starts, then every `interval` seconds,
until the server stops. A run goes batch after batch and rests between batches so the calls'
writes get the database in between: at least `pause`, and `REST_PER_WORK` times as long as
the batch took, so a purge takes at most a fixed share of the database's time however busy
it is (a busy database makes batches slower, and the rests longer with them). A run is
bounded in batches and in time; what a bound leaves is taken by the next run. On PostgreSQL
every replica runs its own purge: the storage adapter makes concurrent purges safe (each
execution deleted once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable

from attrs import frozen

from core import permissions
from core.errors import FluxError, InvalidRequest
from core.permissions import Principal
from ports.idempotency import IdempotencyKeys
from ports.retention import Retention

log = logging.getLogger("flux.retention")

DAY = 86_400.0
INTERVAL = 600.0  # seconds between background runs
FIRST_DELAY = 3.0  # after start: recovery and the first calls go first
BATCH = 500  # executions per batch (the adapters cut it in smaller transactions)
PAUSE = 0.05  # seconds between batches at least: other writers go first
REST_PER_WORK = 3.0  # and 3 s of rest per second a batch took: the purge's share is <= 25 %
MAX_BATCHES = 10_000  # per run: 5 million executions
BACKGROUND_TIME_LIMIT = 300.0  # seconds a background run may take; the next goes on
BY_HAND_TIME_LIMIT = 20.0  # seconds of a purge by hand: its caller waits for the answer


@frozen
class Purged:
    """What one run deleted. `complete`: nothing old enough was left (else a bound stopped
    it, and the next run goes on)."""

    executions: int
    idempotency_keys: int
    complete: bool


class RetentionPurge:
    """The purge use case over the retention and idempotency ports. `retention_days` 0 keeps
    every execution (expired idempotency keys still go: they answer nothing any more). An
    execution that a live idempotency key names is kept until the key expires, also by a
    purge by hand: a retry within the key's window finds it instead of running again."""

    def __init__(
        self,
        executions: Retention,
        keys: IdempotencyKeys | None,
        *,
        retention_days: int,
        idempotency_window: float,
        clock: Callable[[], float] = time.time,
        interval: float = INTERVAL,
        first_delay: float = FIRST_DELAY,
        batch: int = BATCH,
        pause: float = PAUSE,
    ) -> None:
        self._executions = executions
        self._keys = keys
        self._retention_days = retention_days
        self._window = idempotency_window
        self._clock = clock
        self._interval = interval
        self._first_delay = first_delay
        self._batch = batch
        self._pause = pause
        self._task: asyncio.Task[None] | None = None

    # -- by hand -----------------------------------------------------------------------------

    async def purge(self, principal: Principal, older_than: float) -> Purged:
        """Delete the finished executions last changed more than `older_than` seconds ago
        (0: every finished one) and the expired idempotency keys. Needs the admin permission."""
        permissions.require(principal, permissions.ADMIN)
        if not (math.isfinite(older_than) and older_than >= 0):
            raise InvalidRequest(
                f"older_than must be a number of seconds >= 0, got {older_than!r}",
                parameter="older_than",
            )
        return await self._run(self._clock() - older_than, BY_HAND_TIME_LIMIT)

    # -- in the background -------------------------------------------------------------------

    def start(self) -> None:
        """Start the background purge on the running loop; `close` stops it."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._background(), name="flux-retention"
            )

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_once(self) -> Purged:
        """One background run: executions past `retention_days` (none when it is 0)."""
        cutoff = self._clock() - self._retention_days * DAY if self._retention_days else None
        return await self._run(cutoff, BACKGROUND_TIME_LIMIT)

    async def _background(self) -> None:
        """Until `close`: a run, then the interval's sleep; after a run a bound stopped, only
        the first delay's, so a backlog goes at the pace of the rests, not of the interval."""
        await asyncio.sleep(self._first_delay)
        while True:
            backlog = False
            try:
                purged = await self.run_once()
            except FluxError as exc:  # storage trouble: the next run tries again
                log.warning("retention purge stopped: %s", exc.message)
            except Exception:
                log.exception("retention purge failed")
            else:
                self._report(purged)
                backlog = not purged.complete
            await asyncio.sleep(self._first_delay if backlog else self._interval)

    def _report(self, purged: Purged) -> None:
        if not (purged.executions or purged.idempotency_keys):
            return
        log.info(
            "purged %d finished execution(s) older than %d day(s) and %d expired "
            "idempotency key(s)%s",
            purged.executions,
            self._retention_days,
            purged.idempotency_keys,
            "" if purged.complete else "; more left, the next run goes on with them",
        )

    # -- both --------------------------------------------------------------------------------

    async def _run(self, cutoff: float | None, time_limit: float) -> Purged:
        """Expired keys, then batches of executions changed before `cutoff` (None: none). In
        that order: the storage keeps an execution a key names, until the key expires."""
        started = time.monotonic()
        keys = 0
        if self._keys is not None:
            keys = await self._keys.purge(self._clock() - self._window)
        executions, complete = 0, True
        if cutoff is not None:
            executions, complete = await self._batches(cutoff, started + time_limit)
        return Purged(executions, keys, complete)

    async def _batches(self, cutoff: float, until: float) -> tuple[int, bool]:
        """(how many went, whether none is left): at most MAX_BATCHES batches, and none
        started after the monotonic time `until`."""
        total = 0
        for _ in range(MAX_BATCHES):
            began = time.monotonic()
            done = await self._executions.purge_finished(cutoff, self._batch)
            total += done
            if done < self._batch:
                return total, True
            if time.monotonic() >= until:
                break
            await asyncio.sleep(max(self._pause, (time.monotonic() - began) * REST_PER_WORK))
        return total, False
