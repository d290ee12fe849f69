"""A worker process's loop: claim executions, drive them, heartbeat, release.

Claimed executions are driven by an ordinary Runtime over a lease-checked view of the store
(engine/claims.py), so they replay from their logs exactly as a recovered execution does. A
heartbeat renews every held lease each third of the lease; one that comes back lost is
cancelled here without writing anything (whoever took it over finishes it). Stopping waits a
little for running executions, then releases the leases of those still running so another
worker can take them at once instead of after the lease expires.

An idle worker claims again as soon as the store signals that an execution may have become
claimable, when one of its own executions ends, and otherwise every `poll` seconds: signals
can be lost, polling is what makes sure nothing waits forever. It listens before its first
claim, so an execution stored between a claim and the wait after it still wakes that wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence

from engine.claims import LeasedExecutions
from engine.deadlines import STUCK_WAIT
from engine.registration import WorkflowLoader
from engine.runtime import Runtime
from ports.executions import ExecutionLog, ExecutionSignals, Leases, Listener, Progress

log = logging.getLogger("flux.worker")

DEFAULT_LEASE = 30.0  # seconds
DEFAULT_POLL = 1.0  # seconds between claims while idle and no signal comes
SIGNAL_WAIT = 30.0  # seconds each wait for a claimable signal lasts before it starts again


def new_owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class ExecutionWorker:
    """Runs executions claimed through `leases`, at most `concurrency` at a time, on `threads`
    worker threads, and claims again when `signals` says there may be more. `run()` returns
    after `stop()`."""

    def __init__(
        self,
        executions: ExecutionLog,
        leases: Leases,
        signals: ExecutionSignals,
        *,
        loader: WorkflowLoader,
        owner: str | None = None,
        concurrency: int = 8,
        threads: int = 4,
        lease: float = DEFAULT_LEASE,
        poll: float = DEFAULT_POLL,
        grace: float = 5.0,
        share_loop: bool = False,
        progress: Progress | None = None,
        clock: Callable[[], float] = time.time,
        stuck_wait: float = STUCK_WAIT,
    ) -> None:
        """`share_loop`: let async workflow code run on this worker's own loop. Only where a
        stalled loop cannot let another worker run the same execution: under a supervisor that
        kills a worker whose renewals stop (the local pool), not on a shared database where
        the lease would simply expire while the code still runs. `stuck_wait`: how long a run
        past its deadline in a thread that does not yield is held before it is failed anyway
        (under the local pool: longer than the pool takes to kill this worker for it)."""
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if lease <= 0:
            raise ValueError("lease must be > 0 seconds")
        self.owner = owner or new_owner_id()
        self.leases = leases
        self.signals = signals
        self.concurrency = concurrency
        self.lease = lease
        self.poll = poll
        self.grace = grace
        self._clock = clock
        self._view = LeasedExecutions(executions, leases, self.owner)
        # Workflow code stays off this loop: a blocking step would stall the lease heartbeats,
        # and another worker would take over an execution that is still running here.
        self._runtime = Runtime(
            self._view,
            loader=loader,
            loop_threads=threads,
            share_loop=share_loop,
            clock=clock,
            progress=progress,
        )
        self._runtime.stuck_wait = stuck_wait
        self._held: dict[str, asyncio.Task[None]] = {}
        self._chores: set[asyncio.Task[None]] = set()
        self._wake: asyncio.Event | None = None
        self._stopping = False

    def held(self) -> list[str]:
        """Ids of the executions this worker is driving now."""
        return list(self._held)

    def stop(self) -> None:
        """Ask `run()` to finish; safe to call from a signal handler on the loop."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        self._wake = wake = asyncio.Event()
        beat_every = self.lease / 3
        next_beat = time.monotonic() + beat_every
        claimable = await self.signals.listen(None)  # None: any execution to claim
        forward = asyncio.get_running_loop().create_task(_forward(claimable, wake))
        try:
            while not self._stopping:
                wake.clear()
                free = self.concurrency - len(self._held)
                claimed = await self._claim(free) if free > 0 else 0
                if time.monotonic() >= next_beat:
                    await self._heartbeat()
                    next_beat = time.monotonic() + beat_every
                if claimed and claimed == free:
                    continue  # a full batch: there may be more waiting
                timeout = max(0.0, min(self.poll, next_beat - time.monotonic()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout)
        finally:
            forward.cancel()
            claimable.close()
            await self._shutdown()

    # -- steps -------------------------------------------------------------------------------

    async def _claim(self, limit: int) -> int:
        try:
            claimed = await self.leases.claim(
                self.owner, limit=limit, lease=self.lease, now=self._clock()
            )
        except Exception:
            log.exception("claiming executions failed; retrying")
            return 0
        if not claimed:
            return 0
        self._view.hand_over(claimed)
        # Those recover() could not start stay leased to us until the lease runs out; then
        # any worker retries them.
        for execution_id in await self._runtime.recover():
            task = asyncio.get_running_loop().create_task(self._follow(execution_id))
            self._held[execution_id] = task
        return len(claimed)

    async def _follow(self, execution_id: str) -> None:
        try:
            await self._runtime.wait(execution_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("execution %s stopped here: %s", execution_id, exc)
        finally:
            self._held.pop(execution_id, None)
            if self._wake is not None:
                self._wake.set()

    async def _heartbeat(self) -> None:
        ids = list(self._held)
        if not ids:
            return
        try:
            kept = set(
                await self.leases.renew(self.owner, ids, lease=self.lease, now=self._clock())
            )
        except Exception:
            log.exception("renewing leases failed; retrying")
            return
        self.revoke([execution_id for execution_id in ids if execution_id not in kept])

    def revoke(self, execution_ids: Sequence[str]) -> None:
        """Stop these runs here without writing anything more: their lease is gone (whoever
        holds it now, or a cancel, decides their state)."""
        for execution_id in execution_ids:
            if execution_id in self._held:
                log.warning("lost the lease on execution %s; stopping it here", execution_id)
                self._chore(self._runtime.cancel(execution_id))

    def _chore(self, coro) -> None:
        async def quietly() -> None:
            with contextlib.suppress(Exception):
                await coro

        task = asyncio.get_running_loop().create_task(quietly())
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    async def _shutdown(self) -> None:
        running = list(self._held.values())
        if running and self.grace > 0:
            await asyncio.wait(running, timeout=self.grace)
        left = list(self._held)
        await self._runtime.close()  # what still runs stays RUNNING, as after a crash
        for task in [*self._held.values(), *self._chores]:
            task.cancel()
        if left:
            try:
                await self.leases.release(self.owner, left)
            except Exception:
                log.exception("releasing leases failed; they expire in %.0fs", self.lease)


async def _forward(signals: Listener, wake: asyncio.Event) -> None:
    """Set `wake` at each signal, until cancelled."""
    while True:
        if await signals.wait(SIGNAL_WAIT):
            wake.set()
