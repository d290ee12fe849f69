"""The composition root of worker processes: `flux start worker` on a shared database, and the
local workers a server starts and supervises (`--link-fd`).

Kept apart from adapters/bootstrap.py so that a worker imports only the engine and storage, not
the HTTP, auth and MCP stacks of the server (about 2 s of start-up on a loaded machine, during
which a new worker could take no work).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from adapters.config import Settings
from adapters.storage.factory import open_storage
from engine.linked import LinkedVersions, ServerLink
from engine.pool import DEFAULT_CAPACITY
from engine.pool import DEFAULT_LEASE as POOL_LEASE
from engine.registration import WorkflowLoader
from engine.worker import DEFAULT_LEASE, ExecutionWorker


async def run_worker(
    settings: Settings,
    *,
    concurrency: int = 8,
    lease: float = DEFAULT_LEASE,
    ready: Callable[[ExecutionWorker], None] | None = None,
) -> None:
    """`flux start worker`: claim and run executions from the settings' database until
    SIGINT or SIGTERM."""
    storage = await open_storage(settings.database_url)
    try:
        worker = ExecutionWorker(
            storage.executions,
            storage.leases,
            storage.signals,
            loader=WorkflowLoader(storage.catalog),
            concurrency=concurrency,
            threads=min(settings.workers, concurrency),
            lease=lease,
        )
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, worker.stop)
        if ready is not None:
            ready(worker)
        await worker.run()
    finally:
        await storage.close()


async def run_linked_worker(link_fd: int, *, concurrency: int = DEFAULT_CAPACITY) -> None:
    """One local worker process of a server: runs what the server assigns over `link_fd`,
    until the server stops it (SIGTERM) or goes away."""
    _end_with_parent()
    # The server's standard error is this process's too: warnings, and the traceback of every
    # failed execution (`flux.engine`), in the server's own log format.
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when its workers stop
    link = await ServerLink.over_socket(link_fd)
    worker = ExecutionWorker(
        link,
        link,
        link,
        loader=WorkflowLoader(LinkedVersions(link)),
        concurrency=concurrency,
        lease=POOL_LEASE,
        grace=1.0,
        share_loop=True,
        progress=link,
        # A run stuck past its deadline stays held: the server kills this process for it
        # (engine/pool.py), which is the only way to stop code that never yields.
        stuck_wait=30.0,
    )
    link.on_revoke = worker.revoke
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, worker.stop)
    serving = loop.create_task(link.serve())
    serving.add_done_callback(lambda _: worker.stop())
    try:
        await worker.run()
    finally:
        serving.cancel()


def _end_with_parent() -> None:
    """Have the kernel end this process when the server dies, even by kill -9."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # elsewhere than Linux: the closed link ends it instead
