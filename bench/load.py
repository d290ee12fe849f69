"""A closed-loop load generator: a fixed number of workers, capped by operation count and seconds.

An operation is one user-visible action (a sync call; a submit followed by polls until done; a
pause and its resume). It returns how many HTTP requests it made and raises `Failed` when the
answer is not the expected one. Latency is measured per operation, on the client's clock.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import attrs


class Failed(Exception):
    """The operation got an answer it should not have (status or body)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


Operation = Callable[[aiohttp.ClientSession], Awaitable[int]]


@attrs.frozen
class Limits:
    requests: int  # operations measured, at most
    seconds: float  # measuring stops after this long, whatever the count
    warmup: int = 0  # operations run first and not measured


@attrs.frozen
class LoadResult:
    concurrency: int
    operations: int
    errors: int
    warmup_operations: int
    http_requests: int
    seconds: float
    ops_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    failures: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 when empty)."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def new_session(concurrency: int, timeout: float = 60.0) -> aiohttp.ClientSession:
    # One keep-alive connection per worker, as a pooled client would hold.
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout))


async def _drive(
    session: aiohttp.ClientSession,
    operation: Operation,
    concurrency: int,
    count: int,
    seconds: float,
) -> tuple[list[float], int, int, Counter[str], float]:
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    issued = 0
    http_requests = 0
    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> None:
        nonlocal issued, http_requests
        while issued < count and time.perf_counter() < deadline:
            issued += 1
            begun = time.perf_counter()
            try:
                http_requests += await operation(session)
            except Failed as exc:
                failures[exc.why] += 1
                continue
            except (TimeoutError, aiohttp.ClientError) as exc:
                failures[type(exc).__name__] += 1
                continue
            latencies.append(time.perf_counter() - begun)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, issued, http_requests, failures, time.perf_counter() - started


async def run_load(operation: Operation, concurrency: int, limits: Limits) -> LoadResult:
    warmed: list[float] = []
    async with new_session(concurrency) as session:
        if limits.warmup:
            warmed, *_ = await _drive(
                session, operation, concurrency, limits.warmup, limits.seconds
            )
        latencies, issued, http_requests, failures, elapsed = await _drive(
            session, operation, concurrency, limits.requests, limits.seconds
        )
    latencies.sort()
    done = len(latencies)
    return LoadResult(
        concurrency=concurrency,
        operations=done,
        errors=issued - done,
        warmup_operations=len(warmed),
        http_requests=http_requests,
        seconds=round(elapsed, 3),
        ops_per_s=round(done / elapsed, 1) if elapsed > 0 else 0.0,
        p50_ms=_ms(percentile(latencies, 0.50)),
        p90_ms=_ms(percentile(latencies, 0.90)),
        p99_ms=_ms(percentile(latencies, 0.99)),
        max_ms=_ms(latencies[-1] if latencies else 0.0),
        mean_ms=_ms(sum(latencies) / done if done else 0.0),
        failures=dict(failures.most_common(5)),
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
