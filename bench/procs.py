"""Processes the benchmark starts: each in a fresh working directory, ended only by its own PID."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(root: Path = ROOT) -> dict[str, str]:
    """The environment of a child process running the code of the checkout at `root`."""
    # FLUX_* settings of the caller's shell must not leak into a benchmark's fresh server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUX_")}
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def read_rss_kib(pid: int) -> int:
    """VmRSS of a live process, in KiB (Linux /proc)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, all its threads (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        # The command name (field 2) may hold spaces; fields after its ')' are fixed.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent not idle, summed over cores (Linux /proc/stat)."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / TICKS


class Process:
    """One child process serving HTTP on 127.0.0.1:port."""

    def __init__(
        self, label: str, args: list[str], cwd: Path, port: int, root: Path = ROOT
    ) -> None:
        """`root`: the checkout whose code the process runs (another one: `bench/ab.py`)."""
        self.label, self.args, self.cwd, self.port, self.root = label, args, cwd, port, root
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = cwd / f"{label}-{port}.log"
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    async def start(self, timeout: float = 30.0) -> Process:
        log = await asyncio.to_thread(open, self.log_path, "ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *self.args,
                cwd=self.cwd,
                env=child_env(self.root),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        finally:
            log.close()
        await self._wait_healthy(timeout)
        return self

    async def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.returncode is not None:
                    raise RuntimeError(f"{self.label} exited early:\n{await self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with session.get(self.url + "/health") as answer:
                        if answer.status < 500 or answer.status == 503:
                            return
                await asyncio.sleep(0.05)
        raise TimeoutError(f"{self.label} did not answer /health in {timeout}s")

    async def log_tail(self, chars: int = 4000) -> str:
        if not self.log_path.exists():
            return ""
        text = await asyncio.to_thread(self.log_path.read_text, errors="replace")
        return text[-chars:]

    async def rss_kib(self) -> int:
        return await asyncio.to_thread(read_rss_kib, self.pid)

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    async def kill(self) -> None:
        """SIGKILL: what is on disk afterwards is what was durable."""
        await self._signal(signal.SIGKILL, 10.0)

    async def stop(self) -> None:
        if not await self._signal(signal.SIGTERM, 10.0):
            await self.kill()

    async def _signal(self, sig: int, wait: float) -> bool:
        if self.proc is None or self.proc.returncode is not None:
            return True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, sig)
        try:
            await asyncio.wait_for(self.proc.wait(), wait)
        except TimeoutError:
            return False
        return True


class Workdir:
    """A fresh temporary directory (its own .flux/ database); removed at the end unless kept."""

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self.paths: list[Path] = []

    def new(self, prefix: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"flux-bench-{prefix}-"))
        self.paths.append(path)
        return path

    async def cleanup(self) -> None:
        if not self.keep:
            for path in self.paths:
                await asyncio.to_thread(shutil.rmtree, path, True)


@contextlib.asynccontextmanager
async def running(process: Process) -> AsyncIterator[Process]:
    try:
        yield await process.start()
    finally:
        await process.stop()


def flux_server(cwd: Path, *extra: str, root: Path = ROOT) -> Process:
    port = free_port()
    args = ["-m", "adapters.cli", "start", "server", "--host", "127.0.0.1", "--port", str(port)]
    return Process("server", [*args, *extra], cwd, port, root)


def children_of(pid: int) -> list[int]:
    """Live child processes of `pid` (a server's worker processes), from /proc."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(child) for child in (task / "children").read_text().split()]
    return found


class Family:
    """A server and its worker processes, measured together (CPU, memory)."""

    def __init__(self, server: Process) -> None:
        self.server = server

    def pids(self) -> list[int]:
        return [self.server.pid, *children_of(self.server.pid)]

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                total += process_cpu_seconds(pid)
        return total

    def rss_kib(self) -> int:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError, RuntimeError):
                total += read_rss_kib(pid)
        return total


def flux_standalone(cwd: Path, service: str, server_url: str) -> Process:
    port = free_port()
    args = ["-m", "adapters.cli", "service", "start", service, "--host", "127.0.0.1"]
    args += ["--port", str(port), "--server-url", server_url]
    return Process("standalone", args, cwd, port)


def ceiling_server(cwd: Path) -> Process:
    port = free_port()
    return Process("ceiling", ["-m", "bench.ceiling", "--port", str(port)], cwd, port)
