"""`python -m bench.ab --base REV [--quick]`: the sync call on this checkout against the same
call on another revision, in alternating rounds of one run on one machine.

A change on the hot path is judged by ratios measured side by side, never by two runs at two
times on a shared machine. The base revision is checked out in a temporary git worktree; each
server runs the code of its own checkout (its PYTHONPATH) with this checkout's interpreter and
dependencies, on a fresh SQLite database, loaded by the same generator. Prints one JSON
document: per concurrency, each side's figures and head/base ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import procs
from bench.idempotency import cpu_row, server_cpu_us
from bench.operations import echo_call
from bench.scenarios import SYNC_PATH, Plan, Suite

CONCURRENCIES = (1, 16)


def worktree(revision: str, into: Path) -> Path:
    """A detached checkout of `revision` under `into` (removed with it)."""
    path = into / "base"
    subprocess.run(
        ["git", "-C", str(procs.ROOT), "worktree", "add", "--detach", str(path), revision],
        check=True,
        capture_output=True,
    )
    return path


def _ratio(head: float | None, base: float | None) -> float | None:
    return round(head / base, 3) if head and base else None


async def compare(suite: Suite, base_root: Path) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    async with suite.flux("head") as head, suite.flux("base", root=base_root) as base:
        for concurrency in CONCURRENCIES:
            on_head, on_base = await suite.compare(
                [
                    ("head: sync", echo_call(head.url + SYNC_PATH), [head]),
                    ("base: sync", echo_call(base.url + SYNC_PATH), [base]),
                ],
                concurrency,
            )
            rows[f"c{concurrency}"] = {
                "head": cpu_row("sync call", on_head),
                "base": cpu_row("sync call", on_base),
                "throughput_ratio": _ratio(on_head.ops_per_s, on_base.ops_per_s),
                "p50_ratio": _ratio(on_head.p50_ms, on_base.p50_ms),
                "cpu_per_call_ratio": _ratio(server_cpu_us(on_head), server_cpu_us(on_base)),
            }
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    parser.add_argument("--base", required=True, help="the git revision to compare against")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="flux-ab-") as scratch:
        base_root = worktree(args.base, Path(scratch))
        workdirs = procs.Workdir(keep=False)
        suite = Suite(Plan.make(args.quick, profile=False), workdirs, Path(scratch), "ab")
        try:
            rows = asyncio.run(compare(suite, base_root))
        finally:
            asyncio.run(workdirs.cleanup())
            subprocess.run(
                ["git", "-C", str(procs.ROOT), "worktree", "remove", "--force", str(base_root)],
                check=False,
                capture_output=True,
            )
    json.dump({"base": args.base, "head": "working tree", **rows}, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
