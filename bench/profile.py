"""Optional sampling profile of a server we started (py-spy), summarised by where time goes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.procs import ROOT

# A frame in py-spy's collapsed output: "function (path/to/file.py:123)".
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")
# Buckets by file path, first match wins; what is left is "other".
AREAS = (
    ("sqlite3 (reader and writer threads)", ("sqlite3", "/adapters/storage/batching")),
    ("flux engine/", ("/engine/",)),
    ("flux adapters/", ("/adapters/",)),
    ("flux core/", ("/core/",)),
    ("flux sdk (flux/)", ("/flux/",)),
    ("aiohttp", ("aiohttp", "multidict", "yarl")),
    ("json", ("json/",)),
    ("pydantic, attrs, cattrs", ("pydantic", "attr", "cattrs")),
    ("asyncio, selectors, threading", ("asyncio", "selectors", "threading", "concurrent")),
)


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


@contextlib.asynccontextmanager
async def recording(pid: int, output: Path, rate: int = 250) -> AsyncIterator[None]:
    """Sample `pid` while the block runs; collapsed stacks land in `output`."""
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    # --gil: only samples holding the GIL, i.e. Python CPU time. Idle detection does not work
    # on every kernel (select() and queue waits showed up as busy), and the GIL is the
    # resource the server saturates; SQLite work outside the GIL is not in this profile.
    args = ["record", "--pid", str(pid), "--rate", str(rate), "--threads", "--gil"]
    args += ["--format", "raw"]
    spy = await asyncio.create_subprocess_exec(
        exe,
        *args,
        "--output",
        str(output),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.sleep(1.0)  # let it attach before the load starts
    try:
        yield
    finally:
        if spy.returncode is None:
            os.kill(spy.pid, signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                await asyncio.wait_for(spy.wait(), 30)
            except TimeoutError:
                os.kill(spy.pid, signal.SIGKILL)
                await spy.wait()


def summarise(collapsed: str, top: int = 15) -> dict[str, Any]:
    """Share of samples per area (by innermost frame) and the hottest functions, self and total."""
    self_time: Counter[str] = Counter()
    total_time: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        threads[frames[0]] += count
        functions = [_function(frame) for frame in frames[1:]]
        functions = [f for f in functions if f is not None]
        if not functions:
            continue
        samples += count
        leaf_func, leaf_file = functions[-1]
        self_time[f"{leaf_func} ({_short(leaf_file)})"] += count
        areas[_area(leaf_file)] += count
        for func, file in set(functions):
            if _project(file):
                total_time[f"{func} ({_short(file)})"] += count

    def share(counter: Counter[str]) -> list[list[Any]]:
        return [[k, round(100 * v / samples, 1)] for k, v in counter.most_common(top)]

    return {
        "samples": samples,
        "by_area_pct": share(areas),
        "self_pct": share(self_time),
        "project_inclusive_pct": share(total_time),
        "threads_pct": share(threads),
    }


def _function(frame: str) -> tuple[str, str] | None:
    match = FRAME.match(frame.strip())
    if match is None:
        return None
    return match["func"], match["file"]


PROJECT = ("adapters/", "engine/", "core/", "ports/", "flux/")
# Always on the main thread's stack: they would top the inclusive list and say nothing.
STARTUP = ("adapters/cli/", "adapters/bootstrap.py")


def _project(file: str) -> bool:
    if "/site-packages/" in file or "/lib/python" in file:
        return False
    short = _short(file)
    return short.startswith(PROJECT) and not short.startswith(STARTUP)


def _area(file: str) -> str:
    file = file if file.startswith("/") else "/" + file  # py-spy shows some paths relative
    for name, needles in AREAS:
        if any(needle in file for needle in needles):
            return name
    return "other"


def _short(file: str) -> str:
    for marker in ("/site-packages/", "/lib/python3.11/", f"{ROOT}/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file
