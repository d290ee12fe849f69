"""Where one run of workflow code goes: the runtime's own loop, or one of its loop threads.

An async workflow shares the loop unless it was caught blocking it (engine/loop_guard.py) or
the runtime is told never to share (a worker process keeps its loop for lease heartbeats); a
`def` workflow always goes to a loop thread. Sync tasks of every run share one thread pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Sequence
from typing import Any

from core.model import ExecutionEvent
from engine.live import Live
from engine.loop_guard import LoopGuard
from engine.loop_threads import LoopThreadPool
from engine.registration import LoadedWorkflow
from engine.replay import Outcome, Replayer
from flux.context import ExecutionContext

TASK_THREADS = 32  # sync tasks running at once, over all executions


class Placement:
    def __init__(
        self, *, loop_threads: int, task_threads: int, blocking_limit: float, share_loop: bool
    ) -> None:
        self._pool = LoopThreadPool(loop_threads)
        # Sync tasks may block (that is what they are for), so they get a pool of their own
        # rather than the loop's small default one.
        self._task_threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=task_threads, thread_name_prefix="flux-task"
        )
        self._guard = LoopGuard(blocking_limit)
        self._share_loop = share_loop

    async def run(
        self, live: Live, loaded: LoadedWorkflow, value: Any, log: Sequence[ExecutionEvent]
    ) -> Outcome:
        """Run the workflow to its next stop (end, failure or pause), replaying `log`."""
        execution = live.execution
        context = ExecutionContext(
            value,
            execution.execution_id,
            execution.ref.namespace,
            execution.ref.name,
            execution.version,
        )
        replayer = Replayer(live, loaded, context, log, self._task_threads)
        if self._share_loop and self._guard.may_share_the_loop(loaded):
            return await self._run_here(live, loaded, replayer)
        return await self._run_on_a_thread(live, replayer)

    async def close(self) -> None:
        await self._pool.close()
        # Threads still inside a blocking sync task cannot be interrupted: not waited for.
        self._task_threads.shutdown(wait=False, cancel_futures=True)

    async def _run_here(self, live: Live, loaded: LoadedWorkflow, replayer: Replayer) -> Outcome:
        live.run = asyncio.current_task()
        try:
            return await self._guard.watch(loaded, replayer.run())
        finally:
            live.run = None  # from here on a cancel waits for the final state to be saved

    async def _run_on_a_thread(self, live: Live, replayer: Replayer) -> Outcome:
        thread = live.thread = self._pool.pick()
        thread.active += 1
        try:
            live.run = thread.submit(replayer.run())
            return await asyncio.wrap_future(live.run)
        finally:
            live.run = None
            thread.active -= 1
