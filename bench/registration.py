"""`python -m bench.registration [--runs N] [--file PATH]`: what one registration's import costs,
in a thread of the server (as before) and in a sandbox process (engine/sandbox.py), as JSON.

Only the reading of the module is timed, not the catalog write, which is the same either way.
Sides: `in_thread` (load_workflows in a thread), `sandbox` (`inspect_module`: a cold child per
module), and `Sandbox.inspect` (a spare child started ahead), spaced 0.5 s apart and back to
back.
Both sides run `--runs` times after one warm-up each; the thread side keeps its imports warm
(pydantic, our packages), which is exactly the advantage the sandbox gives up by starting a
fresh interpreter. `interpreter_start` is a bare `python -I -S -c pass`, for scale.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from engine.registration import load_workflows
from engine.sandbox import Sandbox, inspect_module

SPACING = 0.5  # seconds between spaced registrations: long enough for a spare to get ready
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "billing.py"


def figures(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "p90_ms": round(p90 * 1000, 1),
        "min_ms": round(ordered[0] * 1000, 1),
    }


async def timed(step: Callable[[], Awaitable[Any]], runs: int, pause: float = 0.0) -> list[float]:
    await step()  # warm-up
    samples = []
    for _ in range(runs):
        await asyncio.sleep(pause)
        started = time.perf_counter()
        await step()
        samples.append(time.perf_counter() - started)
    return samples


async def measure(source: str, filename: str, runs: int) -> dict[str, Any]:
    async def in_thread() -> Any:
        return await asyncio.to_thread(load_workflows, source, filename)

    async def in_sandbox() -> Any:
        return await inspect_module(source, filename)

    def bare() -> None:
        subprocess.run([sys.executable, "-I", "-S", "-c", "pass"], check=True)

    async def interpreter() -> None:
        await asyncio.to_thread(bare)

    spare = Sandbox()
    try:
        thread = await timed(in_thread, runs, SPACING)
        sandbox = await timed(in_sandbox, runs, SPACING)
        # Spaced out, as registrations usually come: the spare is ready when each one arrives.
        warm = await timed(lambda: spare.inspect(source, filename), runs, SPACING)
        # Back to back: each takes the spare that the previous one only just started.
        burst = await timed(lambda: spare.inspect(source, filename), runs)
        start = await timed(interpreter, runs)
    finally:
        await spare.close()
    return {
        "scenario": "registration",
        "module": filename,
        "runs": runs,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "in_thread": figures(thread),
        "sandbox": figures(sandbox),
        "sandbox_spare_ready": figures(warm),
        "sandbox_spare_back_to_back": figures(burst),
        "interpreter_start": figures(start),
        "sandbox_over_thread_ms": round(
            (statistics.median(sandbox) - statistics.median(thread)) * 1000, 1
        ),
        "spare_over_thread_ms": round(
            (statistics.median(warm) - statistics.median(thread)) * 1000, 1
        ),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.registration", description=__doc__)
    parser.add_argument("--runs", type=int, default=20, help="timed registrations per side")
    parser.add_argument("--file", type=Path, default=EXAMPLE, help="the module to register")
    args = parser.parse_args(argv)
    source = args.file.read_text()
    result = asyncio.run(measure(source, args.file.name, args.runs))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
