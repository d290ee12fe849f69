"""List latency with many executions stored: `GET /executions?workflow=...&limit=50` and the
storage query behind it, on SQLite and on PostgreSQL.

Each database is seeded with SQL alone (a recursive CTE on SQLite, `generate_series` on
PostgreSQL): 1,000,000 executions (100,000 with --quick) over 20 workflows in 4 namespaces,
80% COMPLETED, 10% FAILED, 10% PAUSED, a third started through a service, created over the
last few hours (one in 10,000 in a namespace of their own). Then, one request at a time (latency, not throughput): the storage adapter's
`page` directly, and the HTTP route of a server on that database, for a few listings: the
newest 50 of one workflow, a page of it from the middle (a cursor), the newest 50 of all, and
the newest 50 FAILED, the newest 50 of the small namespace. PostgreSQL is the database FLUX_TEST_POSTGRES_DSN names (skipped without
it), in a schema of its own.
"""

from __future__ import annotations

import contextlib
import sqlite3
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from adapters.storage.migrations import migrate
from adapters.storage.postgres import PostgresStorage
from adapters.storage.sqlite import SqliteStorage
from bench import procs
from bench.postgres import _dsn
from bench.scenarios import Suite, say
from core.listing import Cursor, ExecutionFilter
from core.model import ExecutionState, WorkflowRef
from ports.storage import Storage

DATABASE = Path(".flux") / "flux.db"
SPACING = 0.01  # seconds between two seeded executions' creation times
WORKFLOW = WorkflowRef("ns1", "wf7")

# Row n: workflow n % 20 (namespace (n % 20) / 5; one row in 10,000 in the namespace `rare`),
# a state and a service from n.
_SQLITE_SEED = """
WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n < :count - 1)
INSERT INTO executions (id, namespace, name, version, state, input, output, created_at,
                        updated_at, service)
SELECT printf('x%08d', n), CASE WHEN n % 10000 = 1 THEN 'rare' ELSE 'ns' || ((n % 20) / 5) END,
       'wf' || (n % 20), 1,
       CASE WHEN n % 10 < 8 THEN 'COMPLETED' WHEN n % 10 = 8 THEN 'FAILED' ELSE 'PAUSED' END,
       '{"n":' || n || '}', '{"ok":true}', :base + n * :spacing, :base + n * :spacing + 0.5,
       CASE WHEN n % 3 = 0 THEN 'shop' END
FROM s
"""
_PG_SEED = """
INSERT INTO executions (id, namespace, name, version, state, input, output, created_at,
                        updated_at, service)
SELECT 'x' || lpad(n::text, 8, '0'),
       CASE WHEN n % 10000 = 1 THEN 'rare' ELSE 'ns' || ((n % 20) / 5) END, 'wf' || (n % 20), 1,
       CASE WHEN n % 10 < 8 THEN 'COMPLETED' WHEN n % 10 = 8 THEN 'FAILED' ELSE 'PAUSED' END,
       json_build_object('n', n), '{"ok":true}'::json, $2 + n * $3, $2 + n * $3 + 0.5,
       CASE WHEN n % 3 = 0 THEN 'shop' END
FROM generate_series(0, $1 - 1) AS n
"""


def listings(count: int, base: float) -> list[tuple[str, ExecutionFilter, Cursor | None]]:
    middle = count // 2
    cursor = Cursor(base + middle * SPACING, f"x{middle:08d}")
    return [
        ("newest 50 of a workflow", ExecutionFilter(workflow=WORKFLOW), None),
        ("50 of a workflow from mid-table (cursor)", ExecutionFilter(workflow=WORKFLOW), cursor),
        ("newest 50 of all", ExecutionFilter(), None),
        ("newest 50 FAILED", ExecutionFilter(states=frozenset({ExecutionState.FAILED})), None),
        ("newest 50 of a small namespace", ExecutionFilter(namespace="rare"), None),
    ]


def query_of(filter: ExecutionFilter, after: Cursor | None) -> str:
    params: list[tuple[str, str]] = [("limit", "50")]
    if filter.workflow is not None:
        params.append(("workflow", str(filter.workflow)))
    if filter.namespace is not None:
        params.append(("namespace", filter.namespace))
    params += [("state", str(state)) for state in filter.states]
    if after is not None:
        params.append(("cursor", after.encode()))
    return "/executions?" + urlencode(params)


def seed_sqlite(database: Path, count: int, base: float) -> None:
    database.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as db:
        migrate(db)
        db.execute("BEGIN")
        db.execute(_SQLITE_SEED, {"count": count, "base": base, "spacing": SPACING})
        db.execute("COMMIT")
        db.execute("ANALYZE")


async def timed(call: Callable[[], Awaitable[int]], repeats: int) -> dict[str, Any]:
    """p50/p99 in ms of `repeats` sequential calls (after a few unmeasured ones)."""
    for _ in range(5):
        await call()
    times, rows = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        rows = await call()
        times.append((time.perf_counter() - started) * 1000)
    cuts = statistics.quantiles(times, n=100, method="inclusive")
    return {"p50_ms": round(cuts[49], 2), "p99_ms": round(cuts[98], 2), "rows": rows}


async def measure_storage(
    storage: Storage, cases: list[tuple[str, ExecutionFilter, Cursor | None]], repeats: int
) -> dict[str, Any]:
    found = {}
    for label, filter, after in cases:

        async def page(filter: ExecutionFilter = filter, after: Cursor | None = after) -> int:
            return len(await storage.queries.page(filter, 51, after))

        found[label] = await timed(page, repeats)
    return found


async def measure_http(
    url: str, cases: list[tuple[str, ExecutionFilter, Cursor | None]], repeats: int
) -> dict[str, Any]:
    found = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        for label, filter, after in cases:
            path = url + query_of(filter, after)

            async def get(path: str = path) -> int:
                async with session.get(path) as answer:
                    body = await answer.json()
                    if answer.status != 200:
                        raise RuntimeError(f"GET {path}: HTTP {answer.status}: {body}")
                    return len(body["executions"])

            found[label] = await timed(get, repeats)
    return found


async def _serve_and_measure(
    cwd: Path, cases: list[Any], repeats: int, *extra: str
) -> dict[str, Any]:
    # Keep everything: the background purge must not delete seeded rows while measured.
    (cwd / "flux.toml").write_text("[flux]\nretention_days = 0\n")
    async with procs.running(procs.flux_server(cwd, *extra)) as server:
        say(f"listing: server pid {server.pid} on {server.url}")
        return await measure_http(server.url, cases, repeats)


async def listing(suite: Suite) -> dict[str, Any]:
    count = 100_000 if suite.plan.quick else 1_000_000
    repeats = 100 if suite.plan.quick else 300
    base = time.time() - count * SPACING - 60
    cases = listings(count, base)
    results: dict[str, Any] = {"executions_stored": count, "requests_per_case": repeats}

    cwd = suite.workdirs.new("listing-sqlite")
    started = time.perf_counter()
    seed_sqlite(cwd / DATABASE, count, base)
    say(f"listing: seeded {count} executions in SQLite in {time.perf_counter() - started:.1f}s")
    storage = await SqliteStorage.open(cwd / DATABASE)
    try:
        results["sqlite_storage"] = await measure_storage(storage, cases, repeats)
    finally:
        await storage.close()
    results["sqlite_http"] = await _serve_and_measure(cwd, cases, repeats)

    dsn = _dsn()
    if not dsn:
        say("listing: FLUX_TEST_POSTGRES_DSN is not set; PostgreSQL skipped")
        results["postgres"] = "skipped: no PostgreSQL"
    else:
        schema = f"flux_bench_{uuid.uuid4().hex[:10]}"
        pg = await PostgresStorage.open(dsn, schema=schema)
        try:
            started = time.perf_counter()
            async with pg._pool.acquire() as conn:
                await conn.execute(_PG_SEED, count, base, SPACING)
                await conn.execute("ANALYZE executions")
            seconds = time.perf_counter() - started
            say(f"listing: seeded {count} executions in PostgreSQL in {seconds:.1f}s")
            results["postgres_storage"] = await measure_storage(pg, cases, repeats)
            url = f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"
            pg_cwd = suite.workdirs.new("listing-pg")
            results["postgres_http"] = await _serve_and_measure(
                pg_cwd, cases, repeats, "--database-url", url
            )
        finally:
            async with pg._pool.acquire() as conn:
                await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            await pg.close()
    say(f"listing: {results}")
    return {"title": f"GET /executions with {count} executions stored", "runs": [], **results}
