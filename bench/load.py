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
Probe = Callable[[], float]  # a cumulative CPU-seconds counter; read around each measured phase


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
    http_requests: int  # made by the successful operations
    seconds: float
    ops_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    server_cpu_pct: float | None  # CPU of the process(es) under test while measured; 100 = a core
    machine_cpu_pct: float | None  # the whole machine, client included; 100 x cores = saturated
    failures: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def cpu_us_per_call(result: LoadResult, cpu_pct: float | None) -> float | None:
    """Microseconds of CPU per operation, from a CPU share (percent of one core) over the load."""
    if cpu_pct is None or not result.operations:
        return None
    return round(cpu_pct / 100 * result.seconds / result.operations * 1e6, 1)


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


class Sample:
    """What the measured operations of one or more loads produced (rounds add to it)."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.issued = 0
        self.http_requests = 0
        self.failures: Counter[str] = Counter()
        self.seconds = 0.0
        self.warmup_operations = 0
        self.server_cpu: float | None = None
        self.machine_cpu: float | None = None

    def result(self, concurrency: int) -> LoadResult:
        ordered = sorted(self.latencies)
        done, elapsed = len(ordered), self.seconds
        return LoadResult(
            concurrency=concurrency,
            operations=done,
            errors=self.issued - done,
            warmup_operations=self.warmup_operations,
            http_requests=self.http_requests,
            seconds=round(elapsed, 3),
            ops_per_s=round(done / elapsed, 1) if elapsed > 0 else 0.0,
            p50_ms=_ms(percentile(ordered, 0.50)),
            p90_ms=_ms(percentile(ordered, 0.90)),
            p99_ms=_ms(percentile(ordered, 0.99)),
            max_ms=_ms(ordered[-1] if ordered else 0.0),
            mean_ms=_ms(sum(ordered) / done if done else 0.0),
            server_cpu_pct=_pct(self.server_cpu, elapsed),
            machine_cpu_pct=_pct(self.machine_cpu, elapsed),
            failures=dict(self.failures.most_common(5)),
        )


async def _drive(
    session: aiohttp.ClientSession,
    operation: Operation,
    concurrency: int,
    count: int,
    seconds: float,
    sample: Sample,
) -> None:
    issued = 0
    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> None:
        nonlocal issued
        while issued < count and time.perf_counter() < deadline:
            issued += 1
            begun = time.perf_counter()
            try:
                # Not `sample.http_requests += await ...`: that reads the counter before the
                # await and loses the other workers' increments made meanwhile.
                made = await operation(session)
            except Failed as exc:
                sample.failures[exc.why] += 1
                continue
            except (TimeoutError, aiohttp.ClientError) as exc:
                sample.failures[type(exc).__name__] += 1
                continue
            sample.latencies.append(time.perf_counter() - begun)
            sample.http_requests += made

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    sample.issued += issued
    sample.seconds += time.perf_counter() - started


async def run_load(
    operation: Operation,
    concurrency: int,
    limits: Limits,
    sample: Sample | None = None,
    server: Probe | None = None,
    machine: Probe | None = None,
) -> LoadResult:
    """Warm up, then measure into `sample` (a fresh one unless given); the sample's result."""
    sample = sample if sample is not None else Sample()
    async with new_session(concurrency) as session:
        if limits.warmup:
            warm = Sample()
            await _drive(session, operation, concurrency, limits.warmup, limits.seconds, warm)
            sample.warmup_operations += len(warm.latencies)
        # Probes read /proc: a few hundred bytes, quick enough to do on the loop twice per load.
        before = (server() if server else None, machine() if machine else None)
        await _drive(session, operation, concurrency, limits.requests, limits.seconds, sample)
        if server and before[0] is not None:
            sample.server_cpu = (sample.server_cpu or 0.0) + server() - before[0]
        if machine and before[1] is not None:
            sample.machine_cpu = (sample.machine_cpu or 0.0) + machine() - before[1]
    return sample.result(concurrency)


def _pct(cpu: float | None, elapsed: float) -> float | None:
    return None if cpu is None or elapsed <= 0 else round(100 * cpu / elapsed, 1)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
