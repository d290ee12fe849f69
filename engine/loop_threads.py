"""Loop threads: threads each running an event loop of its own, for workflow code that may block.

`def` workflows, async ones caught blocking the server's loop (engine/loop_guard.py) and every
run of a `flux start worker` process run here. Blocking code (time.sleep, CPU loops, sync
clients) on a worker stalls only the executions sharing that worker's loop, never the server's
loop that answers HTTP and writes to the store. New executions go to the least busy worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self, index: int) -> None:
        self.index = index
        self.active = 0  # executions assigned; read and written on the main loop only
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, name=f"flux-loop-{index}", daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        if not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self.loop.stop)
            except RuntimeError:  # closed in between
                pass

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            leftover = asyncio.all_tasks(self.loop)
            for task in leftover:
                task.cancel()
            if leftover:
                # Bounded: code that swallows cancellation must not hold the shutdown forever.
                self.loop.run_until_complete(asyncio.wait(leftover, timeout=2))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()


class LoopThreadPool:
    """`size` loop threads, started on the first `pick`: most workflows never need one."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one loop thread")
        self.size = size
        self.threads: list[LoopThread] = []

    def pick(self) -> LoopThread:
        if not self.threads:
            self.threads = [LoopThread(i) for i in range(self.size)]
        return min(self.threads, key=lambda worker: worker.active)

    async def close(self, timeout: float = 5.0) -> None:
        for worker in self.threads:
            worker.stop()

        def join() -> None:
            deadline = time.monotonic() + timeout
            for worker in self.threads:
                # A worker stuck in blocking user code is a daemon thread: left behind, not awaited.
                worker.thread.join(max(0.0, deadline - time.monotonic()))

        await asyncio.to_thread(join)
