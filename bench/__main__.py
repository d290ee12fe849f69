"""`python -m bench [--quick] [--scenarios a,b,c] [--profile] [--keep]`: see docs/performance.md."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from bench import idempotency, isolation, listing, machine, postgres, report, retention
from bench.procs import Workdir
from bench.scenarios import NEEDS, Plan, Suite, say
from bench.scenarios import SCENARIOS as BASIC

SCENARIOS = {
    **BASIC,
    "isolation": isolation.isolation,
    "cpu": isolation.cpu,
    "postgres": postgres.postgres,
    "retention": retention.retention,
    "listing": listing.listing,
    "idempotency": idempotency.idempotency,
}

RESULTS = Path(__file__).resolve().parent / "results"
# A quick (smoke) run never overwrites the committed full results the README cites.
QUICK_RESULTS = RESULTS / "quick"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Start Flux on 127.0.0.1 with fresh databases, load it, compare to targets.",
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of: {', '.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also sample the server with py-spy (sync, c16)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary working dirs")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help=f"where results go (default: {RESULTS}, or {QUICK_RESULTS} with --quick)",
    )
    args = parser.parse_args(argv)
    if args.results is None:
        args.results = QUICK_RESULTS if args.quick else RESULTS
    wanted = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in SCENARIOS]
    if unknown or not wanted:
        parser.error(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    chosen = set(wanted)
    for name in wanted:
        chosen.update(NEEDS.get(name, ()))
    args.chosen = [name for name in SCENARIOS if name in chosen]  # canonical order
    return args


async def run(args: argparse.Namespace, stamp: str) -> dict[str, Any]:
    plan = Plan.make(args.quick, args.profile)
    workdirs = Workdir(args.keep)
    suite = Suite(plan, workdirs, args.results, stamp)
    scenarios: dict[str, Any] = {}
    try:
        for name in args.chosen:
            say(f"scenario {name}")
            scenarios[name] = await SCENARIOS[name](suite)
    finally:
        await workdirs.cleanup()
        if args.keep:
            say(f"kept: {', '.join(map(str, workdirs.paths))}")
    return {"plan": attrs.asdict(plan), "scenarios": scenarios}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    args.results.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    description = machine.describe()
    started = time.monotonic()
    outcome = asyncio.run(run(args, stamp))
    document = {
        "started_at": now.isoformat(timespec="seconds"),
        "elapsed_s": round(time.monotonic() - started, 1),
        "machine": description,
        **outcome,
    }
    document["targets"] = report.targets(document["scenarios"])
    table = report.markdown(document)
    for path in report.write(args.results, stamp, document, table):
        say(f"wrote {path}")
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
