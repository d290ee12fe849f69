"""Real `flux` processes on 127.0.0.1 for end-to-end tests: started, awaited and ended by PID."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def flux_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "adapters.cli", *args]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUX_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class FluxProcess:
    """One `flux` process we started; only ever ended through its own PID."""

    def __init__(
        self,
        args: list[str],
        cwd: Path,
        port: int,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
    ):
        """`args` of the `flux` command, or a whole other `command` (an example program)."""
        self.args, self.cwd, self.port, self.env = args, cwd, port, env
        self.command = command or flux_command(*args)
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = cwd / f"flux-{port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> FluxProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env=child_env(self.env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"process exited early:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as answer:
                    if answer.status < 500:
                        return
            except urllib.error.HTTPError as exc:
                if exc.code < 500 or exc.code == 503:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{self.args} did not answer /health in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def start_server(
    cwd: Path, port: int | None = None, env: dict[str, str] | None = None
) -> FluxProcess:
    port = port or free_port()
    return FluxProcess(
        ["start", "server", "--host", "127.0.0.1", "--port", str(port)], cwd, port, env
    ).start()


def start_standalone(
    cwd: Path, service: str, server_url: str, *extra: str, port: int | None = None
) -> FluxProcess:
    port = port or free_port()
    args = ["service", "start", service, "--host", "127.0.0.1", "--port", str(port)]
    return FluxProcess([*args, "--server-url", server_url, *extra], cwd, port).start()


def http(
    method: str,
    url: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, Any]:
    """A blocking HTTP call for tests: (status, parsed JSON or text)."""
    status, parsed, _ = exchange(method, url, body, raw=raw, headers=headers, timeout=timeout)
    return status, parsed


def exchange(
    method: str,
    url: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, Any, Any]:
    """`http`, with the answer's headers too: (status, parsed JSON or text, headers)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            status, payload, answer_headers = answer.status, answer.read(), answer.headers
    except urllib.error.HTTPError as exc:
        status, payload, answer_headers = exc.code, exc.read(), exc.headers
    text = payload.decode(errors="replace")
    if answer_headers.get_content_type() == "application/json":
        return status, json.loads(text), answer_headers
    return status, text, answer_headers


def register_file(server_url: str, path: Path) -> tuple[int, Any]:
    return http(
        "POST",
        f"{server_url}/workflows?filename={path.name}",
        raw=path.read_bytes(),
        headers={"Content-Type": "text/x-python"},
    )


def register_source(server_url: str, source: str, filename: str = "wf.py") -> tuple[int, Any]:
    return http(
        "POST",
        f"{server_url}/workflows?filename={filename}",
        raw=source.encode(),
        headers={"Content-Type": "text/x-python"},
    )


def until(predicate: Any, timeout: float, step: float = 0.05) -> Any:
    """Poll `predicate` until it returns a truthy value or `timeout` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


# -- processes as /proc shows them (tests end only what they started, by PID) ------------------


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, ...); None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def parent_of(pid: int) -> int | None:
    stat = proc_stat(pid)
    return None if stat is None else int(stat[1])


def children_of(pid: int) -> list[int]:
    """The live children of `pid` (a server's worker processes and registration sandbox)."""
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and parent_of(int(entry.name)) == pid and alive(int(entry.name))
    ]
