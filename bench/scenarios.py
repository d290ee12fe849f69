"""The scenarios. Each starts its own fresh processes and measures its baseline in the same run."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import attrs

from bench import procs
from bench.load import Limits, LoadResult, Operation, Sample, run_load
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
    rounds: int  # compared cases alternate A B B A ... in this many rounds, against drift

    @classmethod
    def make(cls, quick: bool, profile: bool) -> Plan:
        if quick:
            return cls(quick, 10_000, 3.0, 100, (1_000, 5_000), 120.0, 10, 10_000, 100, profile, 2)
        return cls(
            False, 50_000, 10.0, 300, (10_000, 100_000), 1_200.0, 10, 10_000, 100, profile, 4
        )

    def limits(self) -> Limits:
        return Limits(self.requests, self.seconds, self.warmup)

    def round_limits(self) -> Limits:
        rounds = self.rounds
        return Limits(
            self.requests // rounds, self.seconds / rounds, max(10, self.warmup // rounds)
        )


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


def _cpu_of(under: Sequence[procs.Process]) -> Callable[[], float]:
    return lambda: sum(process.cpu_seconds() for process in under)


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
    async def flux(
        self, label: str, *extra: str, root: Path = procs.ROOT
    ) -> AsyncIterator[procs.Process]:
        """A fresh main server with the bench workflows registered and the bench service;
        `extra`: more `flux start server` flags; `root`: the checkout whose code it runs."""
        server = procs.flux_server(self.workdirs.new(label), *extra, root=root)
        async with procs.running(server):
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
                await register(s, server.url, BENCH_MODULE, "bench_workflows.py")
                definition = {"name": SERVICE, "namespaces": [BENCH_NAMESPACE]}
                async with s.post(f"{server.url}/services", json=definition) as answer:
                    await expect(answer, 201)
            say(f"{label}: server pid {server.pid} on {server.url}")
            yield server

    async def measure(
        self,
        label: str,
        operation: Operation,
        concurrency: int,
        under: Sequence[procs.Process],
        limits: Limits | None = None,
    ) -> LoadResult:
        result = await run_load(
            operation,
            concurrency,
            limits or self.plan.limits(),
            server=_cpu_of(under),
            machine=procs.machine_busy_seconds,
        )
        self._said(label, result)
        return result

    async def compare(
        self, cases: list[tuple[str, Operation, Sequence[Any]]], concurrency: int
    ) -> list[LoadResult]:
        """Measure the cases in alternating rounds (A B, then B A, ...) so drift hits both."""
        samples = [Sample() for _ in cases]
        limits = self.plan.round_limits()
        for round_ in range(self.plan.rounds):
            order = list(range(len(cases)))
            if round_ % 2:
                order.reverse()
            for index in order:
                _, operation, under = cases[index]
                await run_load(
                    operation,
                    concurrency,
                    limits,
                    samples[index],
                    server=_cpu_of(under),
                    machine=procs.machine_busy_seconds,
                )
        results = [sample.result(concurrency) for sample in samples]
        for (label, *_), result in zip(cases, results, strict=True):
            self._said(label, result)
        return results

    def _said(self, label: str, result: LoadResult) -> None:
        say(
            f"{label} c{result.concurrency}: {result.operations} ops in {result.seconds}s = "
            f"{result.ops_per_s}/s, p50 {result.p50_ms} ms, p99 {result.p99_ms} ms, "
            f"server CPU {result.server_cpu_pct}%, machine CPU {result.machine_cpu_pct}%, "
            f"errors {result.errors}"
        )

    # --- scenarios -------------------------------------------------------------------------

    async def ceiling(self) -> dict[str, Any]:
        server = procs.ceiling_server(self.workdirs.new("ceiling"))
        runs = []
        async with procs.running(server):
            say(f"ceiling: pid {server.pid} on {server.url}")
            for concurrency in (1, 16, 64):
                result = await self.measure(
                    "ceiling", echo_call(f"{server.url}/echo"), concurrency, [server]
                )
                runs.append(run_row("ceiling (bare aiohttp JSON echo)", result))
        return {"title": "Ceiling: bare aiohttp server parsing and echoing JSON", "runs": runs}

    async def sync(self) -> dict[str, Any]:
        runs: list[dict[str, Any]] = []
        extra: dict[str, Any] = {}
        async with self.flux("sync") as server:
            operation = echo_call(server.url + SYNC_PATH)
            for concurrency in (1, 16, 64):
                result = await self.measure("sync", operation, concurrency, [server])
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
            result = await self.measure("sync (profiled)", operation, 16, [server])
        collapsed = await asyncio.to_thread(output.read_text) if output.exists() else ""
        summary = summarise(collapsed)
        summary["file"] = output.name
        summary["load"] = result.as_dict()
        summary["answered"] = result.operations + result.warmup_operations
        return summary

    async def async_(self) -> dict[str, Any]:
        runs = []
        async with self.flux("async") as server:
            sync_op = echo_call(server.url + SYNC_PATH)
            async_op = async_run(server.url, SYNC_PATH)
            for concurrency in (1, 16):
                baseline, result = await self.compare(
                    [
                        ("async baseline: sync", sync_op, [server]),
                        ("async submit + poll", async_op, [server]),
                    ],
                    concurrency,
                )
                runs.append(run_row("baseline: sync call", baseline))
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
                    direct, via = await self.compare(
                        [
                            ("main server direct", direct_op, [server]),
                            ("standalone", proxy_op, [server, proxy]),
                        ],
                        concurrency,
                    )
                    runs.append(run_row("main server directly", direct))
                    runs.append(run_row("standalone process -> main server", via))
        return {"title": "Standalone process vs the main server directly", "runs": runs}

    async def catalog(self) -> dict[str, Any]:
        """Two fresh servers, a small and a large catalog, measured in alternating rounds."""
        plan = self.plan
        small = filler_plan(plan.catalog_small - BENCH_WORKFLOWS, 1)
        large = filler_plan(plan.catalog_total - BENCH_WORKFLOWS, plan.catalog_namespaces - 1)
        runs = []
        extra: dict[str, Any] = {}
        async with self.flux("catalog-small") as lean, self.flux("catalog-large") as full:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
                await self._register_all(session, lean.url, small)
                started = time.perf_counter()
                await self._register_all(session, full.url, large)
                took = time.perf_counter() - started
                sizes = [await count_workflows(session, s.url) for s in (lean, full)]
            registered = sizes[1] - BENCH_WORKFLOWS
            extra["registration"] = {
                "workflows": registered,
                "modules": len(large),
                "seconds": round(took, 2),
                "workflows_per_s": round(registered / took, 1) if took else None,
            }
            say(f"catalog: registered {registered} workflows in {took:.1f}s; sizes {sizes}")
            cases = [
                (f"catalog {sizes[0]}", echo_call(lean.url + SYNC_PATH), [lean]),
                (f"catalog {sizes[1]}", echo_call(full.url + SYNC_PATH), [full]),
            ]
            for concurrency in (1, 16):
                for size, result in zip(sizes, await self.compare(cases, concurrency), strict=True):
                    runs.append(run_row(f"catalog of {size} workflows", result))
        extra["catalog_sizes"] = sizes
        extra["namespaces"] = [1 + len(small), 1 + len(large)]
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
            sync_op = echo_call(server.url + SYNC_PATH)
            pause_op = pause_resume(server.url, HOLD_PATH)
            for concurrency in (1, 16):
                baseline, result = await self.compare(
                    [
                        ("pause baseline: sync", sync_op, [server]),
                        ("pause + resume", pause_op, [server]),
                    ],
                    concurrency,
                )
                runs.append(run_row("baseline: sync call", baseline))
                runs.append(run_row("pause (202), then resume (200)", result))
        return {"title": "Pause then resume round trip", "runs": runs}

    async def memory(self) -> dict[str, Any]:
        plan = self.plan
        marks: list[dict[str, Any]] = []
        runs = []
        async with self.flux("memory") as server:
            await asyncio.sleep(1.0)
            family = procs.Family(server)
            marks.append({"executions": 0, "rss_kib": family.rss_kib()})
            operation = echo_call(server.url + SYNC_PATH)
            done = 0
            for mark in plan.memory_marks:
                limits = Limits(mark - done, plan.memory_seconds, 0)
                result = await self.measure(f"memory to {mark}", operation, 16, [server], limits)
                done += result.operations + result.errors
                runs.append(run_row(f"sync calls up to {done} executions", result))
                await asyncio.sleep(1.0)  # let write-behind work settle before reading RSS
                marks.append({"executions": done, "rss_kib": family.rss_kib()})
                say(f"memory: {done} executions, RSS {marks[-1]['rss_kib'] / 1024:.1f} MiB")
        return {
            "title": "Memory: server + worker processes RSS idle and after executions",
            "runs": runs,
            "rss": marks,
        }


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
