"""The sync call on PostgreSQL against the same call on SQLite, in alternating rounds.

Three servers: the default one on SQLite (local worker processes), one on PostgreSQL with its
own local worker processes, and the replica mode the README documents (`--executor workers`
and two `flux start worker` processes, waking each other through LISTEN/NOTIFY). The database
is the one FLUX_TEST_POSTGRES_DSN names (`eval "$(bash .ci/postgres.sh)"`), each server in a
schema of its own; without it the scenario says so and measures nothing.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench import procs
from bench.operations import echo_call
from bench.scenarios import SYNC_PATH, Suite, run_row, say
from bench.workers import start_worker, stop_worker

CONCURRENCY = 16


def _dsn() -> str:
    return os.environ.get("FLUX_TEST_POSTGRES_DSN", "")


def _schema_url(dsn: str) -> str:
    schema = f"flux_bench_{uuid.uuid4().hex[:10]}"
    return f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"


@contextlib.asynccontextmanager
async def _workers(url: str, count: int) -> AsyncIterator[None]:
    started = []
    with tempfile.TemporaryDirectory(prefix="flux-bench-pg-workers-") as logs:
        try:
            for index in range(count):
                started.append(await start_worker(url, 32, Path(logs) / f"worker-{index}.log"))
            yield
        finally:
            for process in started:
                await stop_worker(process)


async def postgres(suite: Suite) -> dict[str, Any]:
    dsn = _dsn()
    if not dsn:
        say("postgres: FLUX_TEST_POSTGRES_DSN is not set; skipped")
        return {"title": "PostgreSQL against SQLite", "runs": [], "skipped": "no PostgreSQL"}
    pooled, replicas = _schema_url(dsn), _schema_url(dsn)
    async with (
        suite.flux("sqlite") as sqlite,
        suite.flux("pg-local", "--database-url", pooled) as pg_local,
        suite.flux("pg-replica", "--database-url", replicas, "--executor", "workers") as pg_rep,
        _workers(replicas, 2),
    ):
        results = await suite.compare(
            [
                ("sqlite", echo_call(sqlite.url + SYNC_PATH), [procs.Family(sqlite)]),
                ("pg local", echo_call(pg_local.url + SYNC_PATH), [procs.Family(pg_local)]),
                ("pg replica", echo_call(pg_rep.url + SYNC_PATH), [procs.Family(pg_rep)]),
            ],
            CONCURRENCY,
        )
    names = (
        "sync call, SQLite (default)",
        "sync call, PostgreSQL, local worker processes",
        "sync call, PostgreSQL replica mode (--executor workers, 2 flux start worker)",
    )
    return {
        "title": "PostgreSQL against SQLite, sync call c16",
        "runs": [run_row(name, result) for name, result in zip(names, results, strict=True)],
    }
