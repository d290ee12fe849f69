"""The local worker processes of a server: started, watched and replaced.

Each worker is a child process linked to the server by one Unix socket (engine/wire.py). The
supervisor starts `size` of them, notices a death (the process exits or the link closes) and a
stall (a worker holding runs whose lease renewals stopped: its loop no longer answers), kills a
stalled one by its PID, and starts a replacement. What happens to the runs a worker held is the
pool's business (engine/pool.py), told through `on_lost`.

Workers run in a session of their own, so a Ctrl-C at the terminal reaches the server only
(which then stops them), and they are started with the link as their only extra descriptor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from engine import wire

log = logging.getLogger("flux.workers")

Spawn = Callable[[int], Sequence[str]]  # the link's descriptor number -> the worker's argv
RESTART_PAUSE = 0.5  # seconds between two starts in one slot: a worker dying at start must
# not turn into a fork loop


class WorkerProcess:
    """One child and its end of the link; `held` is what the server has given it to run."""

    def __init__(self, slot: int, process: asyncio.subprocess.Process, link: socket.socket):
        self.slot = slot
        self.process = process
        self.pid = process.pid
        self.link = link
        self.reader: asyncio.StreamReader | None = None
        self.writer: wire.FrameWriter | None = None
        self.held: set[str] = set()
        self.overdue: set[str] = set()  # held runs past their deadline it was killed for
        # Runs given to it after it stopped renewing (there was no other worker): should it turn
        # out stuck, they never ran on it and its death is not theirs to count.
        self.given_while_late: set[str] = set()
        self.stalled = False  # killed for not answering
        self.last_renew = time.monotonic()
        self.ready = False  # until it says so: a booting worker takes no work yet
        self.alive = True
        self.reason = ""

    def send(self, message: dict[str, Any]) -> None:
        if self.alive and self.writer is not None:
            self.writer.send(message)

    def kill(self, reason: str) -> None:
        """SIGKILL, by the PID we started; the death is then noticed like any other."""
        if not self.reason:
            self.reason = reason
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


Serve = Callable[[WorkerProcess], Awaitable[None]]
Lost = Callable[[WorkerProcess], Awaitable[None]]


class Supervisor:
    def __init__(
        self,
        size: int,
        spawn: Spawn,
        *,
        serve: Serve,
        on_lost: Lost,
        stall_after: float,
        check_every: float = 0.5,
    ) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one worker process")
        self.size = size
        self._spawn = spawn
        self._serve = serve
        self._on_lost = on_lost
        self.stall_after = stall_after
        self.check_every = check_every
        self.workers: list[WorkerProcess] = []
        self.restarts = 0
        self._slots: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._slots = [loop.create_task(self._keep_slot(slot)) for slot in range(self.size)]
        self._slots.append(loop.create_task(self._watch_stalls()))

    @property
    def stopping(self) -> bool:
        return self._stopping

    def live(self) -> list[WorkerProcess]:
        return [worker for worker in self.workers if worker.alive]

    def ready(self) -> list[WorkerProcess]:
        return [worker for worker in self.workers if worker.alive and worker.ready]

    async def stop(self, grace: float) -> None:
        """SIGTERM every worker (each lets its runs finish for a moment, then leaves them
        RUNNING on disk), SIGKILL the ones still there after `grace` seconds."""
        self._stopping = True
        for task in self._slots[self.size :]:
            task.cancel()
        workers = self.live()
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGTERM)
        waits = [asyncio.ensure_future(worker.process.wait()) for worker in workers]
        if waits:
            _, late = await asyncio.wait(waits, timeout=grace)
            for worker in workers:
                worker.kill("the server stopped")
            if late:
                await asyncio.wait(late, timeout=1)
        for task in self._slots:
            task.cancel()
        await asyncio.gather(*self._slots, return_exceptions=True)

    async def _keep_slot(self, slot: int) -> None:
        while not self._stopping:
            started = time.monotonic()
            try:
                worker = await self._start_one(slot)
            except OSError as exc:
                log.error("could not start worker process %d: %s", slot, exc)
                await asyncio.sleep(RESTART_PAUSE * 4)
                continue
            await self._run(worker)
            if self._stopping:
                return
            self.restarts += 1
            await asyncio.sleep(max(0.0, RESTART_PAUSE - (time.monotonic() - started)))

    async def _start_one(self, slot: int) -> WorkerProcess:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = await asyncio.create_subprocess_exec(
                *self._spawn(child.fileno()),
                pass_fds=(child.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        worker = WorkerProcess(slot, process, parent)
        worker.reader, writer = await asyncio.open_unix_connection(sock=parent)
        worker.writer = wire.FrameWriter(writer)
        self.workers = [*(w for w in self.workers if w.alive and w.slot != slot), worker]
        log.info("worker process %d started (pid %d)", slot, worker.pid)
        return worker

    async def _run(self, worker: WorkerProcess) -> None:
        serving = asyncio.ensure_future(self._serve(worker))
        exited = asyncio.ensure_future(worker.process.wait())
        await asyncio.wait({serving, exited}, return_when=asyncio.FIRST_COMPLETED)
        worker.alive = False
        if not exited.done():
            worker.kill("its link to the server closed")
        code = await exited
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        if worker.writer is not None:
            worker.writer.close()
        if not worker.reason:
            worker.reason = _exit_reason(code)
        if not self._stopping:
            log.warning(
                "worker process %d (pid %d) died: %s", worker.slot, worker.pid, worker.reason
            )
            await self._on_lost(worker)

    async def _watch_stalls(self) -> None:
        while True:
            await asyncio.sleep(self.check_every)
            now = time.monotonic()
            for worker in self.live():
                if worker.held and now - worker.last_renew > self.stall_after:
                    log.warning(
                        "worker process %d (pid %d) stopped answering; replacing it",
                        worker.slot,
                        worker.pid,
                    )
                    worker.stalled = True
                    worker.kill(f"it did not answer for {self.stall_after:g} s")


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
