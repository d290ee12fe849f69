"""The scenarios. Each starts its own fresh processes and measures its baseline in the same run."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import attrs

from bench import procs
from bench.load import Limits, LoadResult, Operation, run_load
from bench.operations import async_run, echo_call, pause_resume
from bench.profile import recording, summarise
from bench.workloads import (
    BENCH_MODULE,
    BENCH_NAMESPACE,
    BENCH_WORKFLOWS,
    SERVICE,
    filler_module,
    filler_plan,
)

SYNC_PATH = f"/services/{SERVICE}/one"
HOLD_PATH = f"/services/{SERVICE}/hold"
REGISTER_BATCH = 4  # module uploads in flight at once while filling the catalog


@attrs.frozen
class Plan:
    """Counts and caps of one run; --quick scales them down."""

    quick: bool
    requests: int
    seconds: float
    warmup: int
    memory_marks: tuple[int, int]
    memory_seconds: float
    catalog_small: int
    catalog_total: int
    catalog_namespaces: int
    profile: bool

    @classmethod
    def make(cls, quick: bool, profile: bool) -> Plan:
        if quick:
            return cls(quick, 500, 5.0, 50, (1_000, 5_000), 120.0, 10, 10_000, 100, profile)
        return cls(False, 5_000, 20.0, 200, (10_000, 100_000), 1_200.0, 10, 10_000, 100, profile)

    def limits(self) -> Limits:
        return Limits(self.requests, self.seconds, self.warmup)


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_row(case: str, result: LoadResult) -> dict[str, Any]:
    return {"case": case, **result.as_dict()}


async def expect(answer: aiohttp.ClientResponse, status: int) -> Any:
    body = await answer.json(content_type=None)
    if answer.status != status:
        raise RuntimeError(f"{answer.method} {answer.url}: HTTP {answer.status}: {body}")
    return body


async def register(session: aiohttp.ClientSession, url: str, source: str, filename: str) -> Any:
    headers = {"Content-Type": "text/x-python"}
    async with session.post(
        f"{url}/workflows", params={"filename": filename}, data=source.encode(), headers=headers
    ) as answer:
        return await expect(answer, 201)


async def count_workflows(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(f"{url}/workflows") as answer:
        return len((await expect(answer, 200))["workflows"])


def count_completed(database: Path, name: str) -> int | None:
    """COMPLETED executions of `name` found on disk (None when the layout is not the known one)."""
    if not database.exists():
        return None
    with contextlib.closing(sqlite3.connect(database)) as db:
        try:
            query = "SELECT count(*) FROM executions WHERE name = ? AND state = 'COMPLETED'"
            return int(db.execute(query, (name,)).fetchone()[0])
        except sqlite3.Error:
            return None


class Suite:
    def __init__(self, plan: Plan, workdirs: procs.Workdir, results_dir: Path, stamp: str):
        self.plan, self.workdirs = plan, workdirs
        self.results_dir, self.stamp = results_dir, stamp

    # --- plumbing --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def flux(self, label: str) -> AsyncIterator[procs.Process]:
        """A fresh main server with the bench workflows registered and the bench service."""
        server = procs.flux_server(self.workdirs.new(label))
        async with procs.running(server):
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
                await register(s, server.url, BENCH_MODULE, "bench_workflows.py")
                definition = {"name": SERVICE, "namespaces": [BENCH_NAMESPACE]}
                async with s.post(f"{server.url}/services", json=definition) as answer:
                    await expect(answer, 201)
            say(f"{label}: server pid {server.pid} on {server.url}")
            yield server

    async def measure(
        self, label: str, operation: Operation, concurrency: int, limits: Limits | None = None
    ) -> LoadResult:
        result = await run_load(operation, concurrency, limits or self.plan.limits())
        say(
            f"{label} c{concurrency}: {result.operations} ops in {result.seconds}s = "
            f"{result.ops_per_s}/s, p50 {result.p50_ms} ms, p99 {result.p99_ms} ms, "
            f"errors {result.errors}"
        )
        return result

    # --- scenarios -------------------------------------------------------------------------

    async def ceiling(self) -> dict[str, Any]:
        server = procs.ceiling_server(self.workdirs.new("ceiling"))
        runs = []
        async with procs.running(server):
            say(f"ceiling: pid {server.pid} on {server.url}")
            for concurrency in (1, 16, 64):
                result = await self.measure("ceiling", echo_call(f"{server.url}/echo"), concurrency)
                runs.append(run_row("ceiling (bare aiohttp JSON echo)", result))
        return {"title": "Ceiling: bare aiohttp server parsing and echoing JSON", "runs": runs}

    async def sync(self) -> dict[str, Any]:
        runs: list[dict[str, Any]] = []
        extra: dict[str, Any] = {}
        async with self.flux("sync") as server:
            operation = echo_call(server.url + SYNC_PATH)
            for concurrency in (1, 16, 64):
                result = await self.measure("sync", operation, concurrency)
                runs.append(run_row("sync call, one-task workflow", result))
            if self.plan.profile:
                extra["profile"] = await self._profile(server, operation)
            # SIGKILL, then count what is on disk: every 200 must have been persisted before it.
            await server.kill()
        answered = sum(r["operations"] + r["warmup_operations"] for r in runs)
        if "profile" in extra:
            answered += extra["profile"].pop("answered")
        on_disk = await asyncio.to_thread(count_completed, server.cwd / ".flux" / "flux.db", "one")
        extra["durability"] = {
            "answered_200": answered,
            "completed_on_disk_after_kill_9": on_disk,
            "ok": None if on_disk is None else on_disk >= answered,
        }
        say(f"sync: durability after kill -9: {extra['durability']}")
        return {"title": "Sync service call of a one-task workflow", "runs": runs, **extra}

    async def _profile(self, server: procs.Process, operation: Operation) -> dict[str, Any]:
        output = self.results_dir / f"{self.stamp}-profile.collapsed"
        async with recording(server.pid, output):
            result = await self.measure("sync (profiled)", operation, 16)
        collapsed = await asyncio.to_thread(output.read_text) if output.exists() else ""
        summary = summarise(collapsed)
        summary["file"] = output.name
        summary["load"] = result.as_dict()
        summary["answered"] = result.operations + result.warmup_operations
        return summary

    async def async_(self) -> dict[str, Any]:
        runs = []
        async with self.flux("async") as server:
            for concurrency in (1, 16):
                sync_op = echo_call(server.url + SYNC_PATH)
                baseline = await self.measure("async baseline: sync", sync_op, concurrency)
                runs.append(run_row("baseline: sync call", baseline))
                async_op = async_run(server.url, SYNC_PATH)
                result = await self.measure("async submit + poll", async_op, concurrency)
                row = run_row("async submit, poll status until COMPLETED", result)
                if result.operations:
                    row["polls_per_op"] = round(result.http_requests / result.operations - 1, 2)
                runs.append(row)
        return {"title": "Async submit, then status polling until COMPLETED", "runs": runs}

    async def standalone(self) -> dict[str, Any]:
        runs = []
        async with self.flux("standalone") as server:
            proxy = procs.flux_standalone(server.cwd, SERVICE, server.url)
            async with procs.running(proxy):
                say(f"standalone: pid {proxy.pid} on {proxy.url}")
                direct_op = echo_call(server.url + SYNC_PATH)
                proxy_op = echo_call(proxy.url + "/one")
                for concurrency in (1, 16):
                    direct = await self.measure("main server direct", direct_op, concurrency)
                    runs.append(run_row("main server directly", direct))
                    via = await self.measure("standalone", proxy_op, concurrency)
                    runs.append(run_row("standalone process -> main server", via))
        return {"title": "Standalone process vs the main server directly", "runs": runs}

    async def catalog(self) -> dict[str, Any]:
        plan = self.plan
        fillers = filler_plan(plan.catalog_total - BENCH_WORKFLOWS, plan.catalog_namespaces - 1)
        first_namespace = next(iter(fillers))
        small = fillers[first_namespace][: plan.catalog_small - BENCH_WORKFLOWS]
        runs = []
        extra: dict[str, Any] = {}
        async with self.flux("catalog") as server:
            timeout = aiohttp.ClientTimeout(total=300)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                await register(session, server.url, filler_module(first_namespace, small), "s.py")
                sizes = [await count_workflows(session, server.url)]
                operation = echo_call(server.url + SYNC_PATH)
                for concurrency in (1, 16):
                    result = await self.measure(f"catalog {sizes[0]}", operation, concurrency)
                    runs.append(run_row(f"catalog of {sizes[0]} workflows", result))

                rest = {ns: [n for n in names if n not in small] for ns, names in fillers.items()}
                started = time.perf_counter()
                await self._register_all(session, server.url, rest)
                took = time.perf_counter() - started
                sizes.append(await count_workflows(session, server.url))
                registered = sizes[1] - sizes[0]
                extra["registration"] = {
                    "workflows": registered,
                    "modules": len(rest),
                    "seconds": round(took, 2),
                    "workflows_per_s": round(registered / took, 1) if took else None,
                }
                say(f"catalog: registered {registered} workflows in {took:.1f}s")
                for concurrency in (1, 16):
                    result = await self.measure(f"catalog {sizes[1]}", operation, concurrency)
                    runs.append(run_row(f"catalog of {sizes[1]} workflows", result))
        extra["catalog_sizes"] = sizes
        extra["namespaces"] = 1 + len(fillers)
        return {"title": "Catalog size: same call, small and large catalog", "runs": runs, **extra}

    async def _register_all(
        self, session: aiohttp.ClientSession, url: str, modules: dict[str, list[str]]
    ) -> None:
        gate = asyncio.Semaphore(REGISTER_BATCH)

        async def one(namespace: str, names: list[str]) -> None:
            async with gate:
                await register(session, url, filler_module(namespace, names), f"{namespace}.py")

        await asyncio.gather(*(one(ns, names) for ns, names in modules.items() if names))

    async def pause(self) -> dict[str, Any]:
        runs = []
        async with self.flux("pause") as server:
            for concurrency in (1, 16):
                sync_op = echo_call(server.url + SYNC_PATH)
                baseline = await self.measure("pause baseline: sync", sync_op, concurrency)
                runs.append(run_row("baseline: sync call", baseline))
                operation = pause_resume(server.url, HOLD_PATH)
                result = await self.measure("pause + resume", operation, concurrency)
                runs.append(run_row("pause (202), then resume (200)", result))
        return {"title": "Pause then resume round trip", "runs": runs}

    async def memory(self) -> dict[str, Any]:
        plan = self.plan
        marks: list[dict[str, Any]] = []
        runs = []
        async with self.flux("memory") as server:
            await asyncio.sleep(1.0)
            marks.append({"executions": 0, "rss_kib": await server.rss_kib()})
            operation = echo_call(server.url + SYNC_PATH)
            done = 0
            for mark in plan.memory_marks:
                limits = Limits(mark - done, plan.memory_seconds, 0)
                result = await self.measure(f"memory to {mark}", operation, 16, limits)
                done += result.operations + result.errors
                runs.append(run_row(f"sync calls up to {done} executions", result))
                await asyncio.sleep(1.0)  # let write-behind work settle before reading RSS
                marks.append({"executions": done, "rss_kib": await server.rss_kib()})
                say(f"memory: {done} executions, RSS {marks[-1]['rss_kib'] / 1024:.1f} MiB")
        return {"title": "Memory: server RSS idle and after executions", "runs": runs, "rss": marks}


SCENARIOS: dict[str, Callable[[Suite], Awaitable[dict[str, Any]]]] = {
    "ceiling": Suite.ceiling,
    "sync": Suite.sync,
    "async": Suite.async_,
    "standalone": Suite.standalone,
    "catalog": Suite.catalog,
    "pause": Suite.pause,
    "memory": Suite.memory,
}
# A scenario whose baseline is another scenario's measurement brings it along.
NEEDS = {"sync": ("ceiling",)}
