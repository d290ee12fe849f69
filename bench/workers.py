"""`python -m bench.workers [--dsn URL] [--executions N] [--workers 1,2,4]`: execution
throughput of `flux start worker` processes on PostgreSQL, printed as JSON.

For each workload and worker count: a fresh schema, the workers started and ready, then N
executions stored as CREATED (as a `--executor workers` server stores them) and the clock runs
until every one is COMPLETED. Workloads: `trivial` (two instant tasks: bound by the database
round trips and the workers' CPU) and `io` (two tasks that each wait 50 ms: bound by how many
executions run at once). The DSN comes from --dsn or FLUX_TEST_POSTGRES_DSN
(`eval "$(bash .ci/postgres.sh)"`). On a 2-core machine the curve flattens early: PostgreSQL,
the workers and this process share the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from adapters.storage.postgres import PostgresStorage
from core.model import Execution, ExecutionState
from engine.registration import load_workflows

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT = 30.0
RUN_TIMEOUT = 300.0

SOURCE = """
import asyncio

from flux import ExecutionContext, task, workflow


@task
async def work(n: int, seconds: float) -> int:
    if seconds:
        await asyncio.sleep(seconds)
    return n + 1


@workflow.with_options(namespace="bench")
async def pipeline(ctx: ExecutionContext):
    seconds = ctx.input["seconds"]
    return await work(await work(0, seconds), seconds)
"""

WORKLOADS = {"trivial": 0.0, "io": 0.05}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__)
    parser.add_argument("--dsn", default=os.environ.get("FLUX_TEST_POSTGRES_DSN", ""))
    parser.add_argument("--executions", type=int, default=300)
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument("--concurrency", type=int, default=8, help="per worker")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    return parser.parse_args(argv)


async def start_worker(url: str, concurrency: int, log: Path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUX_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    with open(log, "ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "adapters.cli",
            "start",
            "worker",
            "--database-url",
            url,
            "--concurrency",
            str(concurrency),
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    deadline = time.monotonic() + READY_TIMEOUT
    while b"ready" not in await asyncio.to_thread(log.read_bytes):
        if proc.returncode is not None or time.monotonic() > deadline:
            await stop_worker(proc)
            raise RuntimeError(f"worker did not start: {log.read_text(errors='replace')}")
        await asyncio.sleep(0.05)
    return proc


async def stop_worker(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)  # this PID only
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def measure(
    dsn: str, workload: str, workers: int, executions: int, concurrency: int, logs: Path
) -> dict[str, Any]:
    schema = f"flux_bench_{uuid.uuid4().hex[:12]}"
    url = f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"
    storage = await PostgresStorage.open(dsn, schema=schema, max_size=20)
    procs: list[asyncio.subprocess.Process] = []
    try:
        [registered] = await storage.catalog.register(
            [item.new_workflow for item in load_workflows(SOURCE, "bench.py")]
        )
        for i in range(workers):
            procs.append(
                await start_worker(url, concurrency, logs / f"{workload}-{workers}-{i}.log")
            )
        body = {"seconds": WORKLOADS[workload]}
        started = time.monotonic()
        now = time.time()
        await asyncio.gather(
            *(
                storage.executions.create(
                    Execution(
                        uuid.uuid4().hex,
                        registered.info.ref,
                        registered.info.version,
                        ExecutionState.CREATED,
                        body,
                        created_at=now + n * 1e-6,
                        updated_at=now,
                    )
                )
                for n in range(executions)
            )
        )
        deadline = started + RUN_TIMEOUT
        while True:
            done = len(await storage.executions.in_states([ExecutionState.COMPLETED]))
            if done >= executions or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        seconds = time.monotonic() - started
        left = executions - done
    finally:
        for proc in procs:
            await stop_worker(proc)
        await storage.close()
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()
    return {
        "workload": workload,
        "workers": workers,
        "concurrency_per_worker": concurrency,
        "executions": executions,
        "not_completed": left,
        "seconds": round(seconds, 3),
        "executions_per_second": round(done / seconds, 1),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    conn = await asyncpg.connect(args.dsn)
    try:
        server_version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    results = []
    with tempfile.TemporaryDirectory(prefix="flux-bench-workers-") as logs:
        for workload in args.workloads.split(","):
            for count in (int(n) for n in args.workers.split(",")):
                result = await measure(
                    args.dsn, workload, count, args.executions, args.concurrency, Path(logs)
                )
                print(json.dumps(result), file=sys.stderr, flush=True)
                results.append(result)
    return {
        "benchmark": "workers",
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "postgres": server_version,
        "results": results,
    }


if __name__ == "__main__":
    arguments = parse(sys.argv[1:])
    if not arguments.dsn:
        sys.exit("error: no PostgreSQL: pass --dsn or set FLUX_TEST_POSTGRES_DSN")
    print(json.dumps(asyncio.run(main(arguments)), indent=2))
