"""What isolating workflow code in worker processes costs, and what it buys on CPU-bound work.

- `isolation`: the sync call of a one-task workflow on the default server (worker processes)
  against the same server with `--isolation none` (the workflow runs in the server), measured
  in alternating rounds; CPU per call of the server process alone and of server + workers.
- `cpu`: a workflow burning about 5 ms of pure Python per call, on 2 worker processes against
  1, in alternating rounds: the throughput ratio says whether the second core is used.
"""

from __future__ import annotations

import time
from typing import Any

from bench import procs
from bench.load import LoadResult, cpu_us_per_call
from bench.operations import echo_call
from bench.scenarios import SYNC_PATH, Suite, run_row, say
from bench.workloads import SERVICE

BURN_PATH = f"/services/{SERVICE}/burn"


def _row(case: str, result: LoadResult, server_pct: float | None) -> dict[str, Any]:
    row = run_row(case, result)
    row["server_cpu_us_per_call"] = cpu_us_per_call(result, server_pct)
    row["family_cpu_us_per_call"] = cpu_us_per_call(result, result.server_cpu_pct)
    return row


async def isolation(suite: Suite) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    async with (
        suite.flux("isolated") as isolated,
        suite.flux("shared", "--isolation", "none") as shared,
    ):
        for concurrency in (1, 16):
            # CPU of the whole family (server + workers) through the load's own probe; the
            # server alone is read around the rounds.
            started = {s.pid: s.cpu_seconds() for s in (isolated, shared)}
            begun = time.monotonic()
            results = await suite.compare(
                [
                    ("isolated", echo_call(isolated.url + SYNC_PATH), [procs.Family(isolated)]),
                    ("in-process", echo_call(shared.url + SYNC_PATH), [procs.Family(shared)]),
                ],
                concurrency,
            )
            spent = {s.pid: s.cpu_seconds() - started[s.pid] for s in (isolated, shared)}
            for label, server, result in (
                ("sync call, worker processes (default)", isolated, results[0]),
                ("sync call, --isolation none", shared, results[1]),
            ):
                # The server process alone, as a share of the time its rounds took.
                share = spent[server.pid] / max(result.seconds, 1e-9) * 100
                runs.append(_row(label, result, share))
        say(f"isolation: {time.monotonic() - begun:.0f} s of rounds")
    return {"title": "Isolation: worker processes against the workflow in the server", "runs": runs}


async def cpu(suite: Suite) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    async with (
        suite.flux("one-worker", "--workers", "1") as one,
        suite.flux("two-workers", "--workers", "2") as two,
    ):
        results = await suite.compare(
            [
                ("2 workers", echo_call(two.url + BURN_PATH), [procs.Family(two)]),
                ("1 worker", echo_call(one.url + BURN_PATH), [procs.Family(one)]),
            ],
            8,
        )
        runs.append(run_row("5 ms CPU-bound workflow, 2 worker processes", results[0]))
        runs.append(run_row("5 ms CPU-bound workflow, 1 worker process", results[1]))
    return {"title": "CPU-bound workflows: 2 worker processes against 1", "runs": runs}
