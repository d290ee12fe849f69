"""Built-in helpers: `pause`, durable `sleep`, `parallel` and `pipeline`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from core.deadlines import valid_timeout
from flux._hooks import current_replayer


async def pause(name: str, output: Any = None, *, timeout: float | None = None) -> Any:
    """Suspend the run at the pause point `name` (with `output` shown while paused); returns
    the body the execution is resumed with. With `timeout` (seconds), an execution not resumed
    in time ends FAILED (`PauseTimeout`); time spent paused never counts against the
    workflow's own timeout."""
    seconds = valid_timeout(timeout, f"the timeout of pause {name!r}")
    replayer = current_replayer.get()
    if replayer is None:
        raise RuntimeError("pause() can only be awaited inside a running workflow")
    return await replayer.pause(name, output, seconds)


async def sleep(duration: float | timedelta) -> None:
    """Sleep `duration` seconds; a replayed or recovered run does not sleep again."""
    seconds = duration.total_seconds() if isinstance(duration, timedelta) else float(duration)
    replayer = current_replayer.get()
    if replayer is None:
        await asyncio.sleep(seconds)
        return
    await replayer.sleep(seconds)


async def parallel(*awaitables: Awaitable[Any]) -> list[Any]:
    """Await task calls (or any awaitables) concurrently; results in argument order. The first
    failure cancels the others and propagates."""
    tasks = [asyncio.ensure_future(item) for item in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for pending in tasks:
            pending.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def pipeline(*tasks: Callable[[Any], Awaitable[Any]], input: Any) -> Any:
    """Feed `input` through `tasks` one after the other."""
    result = input
    for step in tasks:
        result = await step(result)
    return result


__all__ = ["parallel", "pause", "pipeline", "sleep"]
