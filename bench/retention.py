"""The sync call while the background retention purge deletes a large backlog, against the same
call with no purge running, in alternating rounds of one run.

Two servers start on copies of one SQLite file seeded with many finished executions 40 days
old (three events each, as a one-task run leaves): one keeps everything (`retention_days = 0`),
the other purges past 30 days, starting 3 s after it starts. While one server is measured the
other is stopped (SIGSTOP, then SIGCONT), so neither steals the machine's CPUs from the other:
the "purging" rounds see the purge's whole cost, the baseline rounds none. The purging server's
backlog is sized to outlast its rounds; the result says how many rows went meanwhile and
whether the purge was still going at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from adapters.storage.migrations import migrate
from bench import procs
from bench.load import Sample, run_load
from bench.operations import echo_call
from bench.scenarios import SYNC_PATH, Suite, expect, register, run_row, say
from bench.workloads import BENCH_MODULE, BENCH_NAMESPACE, SERVICE

DAY = 86_400.0
CONCURRENCY = 16
PURGE_START_WAIT = 30.0  # seconds to wait for the first purged row (it starts 3 s after start)
DATABASE = Path(".flux") / "flux.db"


def seed(database: Path, count: int, days_old: float) -> None:
    """A fresh database (migrated) holding `count` COMPLETED executions `days_old` days old."""
    database.parent.mkdir(parents=True, exist_ok=True)
    old = time.time() - days_old * DAY
    with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as db:
        migrate(db)
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO executions (id, namespace, name, version, state, input, output, "
            "created_at, updated_at) VALUES (?, ?, 'one', 1, 'COMPLETED', ?, ?, ?, ?)",
            (
                (f"old-{i:08}", BENCH_NAMESPACE, '{"v":1}', '{"v":1}', old + i / 1e3, old + i / 1e3)
                for i in range(count)
            ),
        )
        db.executemany(
            "INSERT INTO execution_events (execution_id, seq, kind, key, value, at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                (f"old-{i:08}", seq, kind, key, value, old)
                for i in range(count)
                for seq, (kind, key, value) in enumerate(
                    (
                        ("state", "", '"RUNNING"'),
                        ("task_completed", "echo#0", '{"v":1}'),
                        ("state", "", '"COMPLETED"'),
                    )
                )
            ),
        )
        db.execute("COMMIT")


def old_left(database: Path) -> int:
    """Seeded executions still on disk (read beside the server: WAL lets a reader in)."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        return int(
            db.execute("SELECT count(*) FROM executions WHERE id LIKE 'old-%'").fetchone()[0]
        )


@contextlib.asynccontextmanager
async def _server(cwd: Path, retention_days: int) -> AsyncIterator[procs.Process]:
    (cwd / "flux.toml").write_text(f"[flux]\nretention_days = {retention_days}\n")
    server = procs.flux_server(cwd)
    async with procs.running(server):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            await register(session, server.url, BENCH_MODULE, "bench_workflows.py")
            definition = {"name": SERVICE, "namespaces": [BENCH_NAMESPACE]}
            async with session.post(f"{server.url}/services", json=definition) as answer:
                await expect(answer, 201)
        say(f"retention: server pid {server.pid} on {server.url}, retention_days {retention_days}")
        yield server


@contextlib.contextmanager
def _paused(process: procs.Process):  # type: ignore[no-untyped-def]
    """SIGSTOP the server (a process this run started) for the block, then SIGCONT."""
    os.kill(process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(process.pid, signal.SIGCONT)


async def _started_purging(database: Path, seeded: int) -> float:
    deadline = time.monotonic() + PURGE_START_WAIT
    while time.monotonic() < deadline:
        if await asyncio.to_thread(old_left, database) < seeded:
            return time.monotonic()
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the background purge did not start within {PURGE_START_WAIT:.0f} s")


async def retention(suite: Suite) -> dict[str, Any]:
    plan = suite.plan
    seeded = 100_000 if plan.quick else 300_000
    keep_dir, purge_dir = (
        suite.workdirs.new("retention-keep"),
        suite.workdirs.new("retention-purge"),
    )
    started = time.perf_counter()
    await asyncio.to_thread(seed, keep_dir / DATABASE, seeded, 40)
    await asyncio.to_thread(shutil.copytree, keep_dir / ".flux", purge_dir / ".flux")
    say(
        f"retention: seeded {seeded} old finished executions in {time.perf_counter() - started:.1f}s"
    )
    cases = ("sync call, no purge running", "sync call while the purge deletes old executions")
    samples = [Sample(), Sample()]
    limits = plan.round_limits()
    async with _server(keep_dir, 0) as keep, _server(purge_dir, 30) as purging:
        servers = (keep, purging)
        purge_began = await _started_purging(purge_dir / DATABASE, seeded)
        for round_ in range(plan.rounds):
            order = [1, 0] if round_ % 2 else [0, 1]
            for index in order:
                measured, other = servers[index], servers[1 - index]
                with _paused(other):
                    await run_load(
                        echo_call(measured.url + SYNC_PATH),
                        CONCURRENCY,
                        limits,
                        samples[index],
                        server=procs.Family(measured).cpu_seconds,
                        machine=procs.machine_busy_seconds,
                    )
        left = await asyncio.to_thread(old_left, purge_dir / DATABASE)
        purge_seconds = time.monotonic() - purge_began
        kept = await asyncio.to_thread(old_left, keep_dir / DATABASE)
    baseline, purging_result = (sample.result(CONCURRENCY) for sample in samples)
    for label, result in zip(cases, (baseline, purging_result), strict=True):
        suite._said(label, result)
    ratio = round(purging_result.ops_per_s / baseline.ops_per_s, 3) if baseline.ops_per_s else None
    purge = {
        "seeded_old_executions": seeded,
        "purged_while_measured": seeded - left,
        "still_purging_at_end": left > 0,
        "kept_by_retention_0": kept,
        # Wall time from the first purged row to the end, the paused stretches included.
        "seconds_since_purge_began": round(purge_seconds, 1),
        "throughput_ratio_purging_vs_not": ratio,
    }
    say(f"retention: {purge}")
    return {
        "title": "Sync call c16 while the retention purge runs, against no purge",
        "runs": [run_row(cases[0], baseline), run_row(cases[1], purging_result)],
        "purge": purge,
    }
