"""A real server against modules that misbehave at import (SPEC §7): each registration is a 400
with the reason within the time limit, nothing is stored, and the server keeps serving.

The server runs with `registration_timeout` = 2 s (FLUX_REGISTRATION_TIMEOUT), so the modules
that never finish importing cost seconds, not the default ten.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.e2e import processes

LIMIT = 2.0  # seconds: the server's registration_timeout here
SLACK = 3.0  # seconds on top: HTTP, the sandbox's start, a loaded test machine
ENV = {"FLUX_REGISTRATION_TIMEOUT": f"{LIMIT:g}"}

STEADY = '''
from flux import ExecutionContext, workflow


@workflow.with_options(namespace="steady")
async def ping(ctx: ExecutionContext):
    """Answers while others misbehave."""
    return {"pong": ctx.input}
'''

# The workflow in front of each breakage must not be stored either.
GOOD_HEAD = """
from flux import workflow


@workflow.with_options(namespace="NS_HERE")
async def innocent(ctx):
    return 1

"""

BAD = {
    "os._exit": ("import os\nos._exit(0)\n", "exit code 0"),
    "KeyboardInterrupt": ("raise KeyboardInterrupt\n", "KeyboardInterrupt"),
    "SystemExit": ("raise SystemExit(3)\n", "SystemExit"),
    "GeneratorExit": ("raise GeneratorExit\n", "GeneratorExit"),
    "custom BaseException": (
        "class Escape(BaseException):\n    pass\n\nraise Escape('out')\n",
        "Escape",
    ),
    "busy loop": ("while True:\n    pass\n", f"within {LIMIT:g} s"),
    "sleeps forever": ("import time\ntime.sleep(3600)\n", f"within {LIMIT:g} s"),
    "prints without end": (
        "import sys\nwhile True:\n    print('x' * 1000)\n    print('y' * 1000, file=sys.stderr)\n",
        f"within {LIMIT:g} s",
    ),
    "10 GiB": ('data = b"x" * 10**10\n', "MemoryError"),
    "segfault": ("import ctypes\nctypes.string_at(0)\n", "SIGSEGV"),
    "forks and hangs": (
        "import os, time\nif os.fork() == 0:\n    time.sleep(3600)\ntime.sleep(3600)\n",
        f"within {LIMIT:g} s",
    ),
    "syntax": ("def broken(:\n    pass\n", "line"),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    started = processes.start_server(tmp_path_factory.mktemp("isolation"), env=ENV)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def steady(server) -> str:
    """A normal workflow registered before any bad module; its run path."""
    status, body = processes.register_source(server.url, STEADY, "steady.py")
    assert status == 201, body
    path = "/workflows/steady/ping/run"
    assert processes.http("POST", server.url + path, {"n": 0}) == (200, {"pong": {"n": 0}})
    return path


def _register(
    url: str, source: str, timeout: float = LIMIT + SLACK + 5
) -> tuple[int, object, float]:
    # A bounded wait, so a server that does hang fails the test instead of stalling the suite.
    started = time.monotonic()
    status, body = processes.http(
        "POST",
        f"{url}/workflows?filename=bad.py",
        raw=source.encode(),
        headers={"Content-Type": "text/x-python"},
        timeout=timeout,
    )
    return status, body, time.monotonic() - started


def _register_in_background(url: str, source: str, timeout: float) -> threading.Thread:
    def send() -> None:
        with contextlib.suppress(OSError):  # the server may be stopped under it
            _register(url, source, timeout)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def _health_time(url: str) -> float:
    started = time.monotonic()
    status, _ = processes.http("GET", url + "/health", timeout=5)
    assert status == 200
    return time.monotonic() - started


@pytest.mark.parametrize("case", list(BAD))
def test_a_module_that_misbehaves_at_import_is_refused_and_the_server_serves_on(
    server, steady, unique, case
):
    ns = unique("iso")
    tail, reason = BAD[case]
    status, body, elapsed = _register(server.url, GOOD_HEAD.replace("NS_HERE", ns) + tail)
    assert status == 400, body
    assert isinstance(body, dict) and reason in body["message"], body
    assert elapsed < LIMIT + SLACK, f"{case}: answered after {elapsed:.1f} s"
    assert processes.http("GET", f"{server.url}/workflows?namespace={ns}") == (
        200,
        {"workflows": []},
    )
    assert _health_time(server.url) < 1.0
    assert processes.http("POST", server.url + steady, {"n": case}) == (200, {"pong": {"n": case}})


def test_a_hanging_registration_holds_up_nobody_else(server, steady, unique):
    hang = _register_in_background(server.url, "while True:\n    pass\n", LIMIT + SLACK)
    time.sleep(0.3)  # the hanging one is in its sandbox now
    ns = unique("beside")
    status, body, elapsed = _register(server.url, GOOD_HEAD.replace("NS_HERE", ns))
    assert status == 201, body
    assert elapsed < LIMIT, f"a good registration waited {elapsed:.1f} s behind a hanging one"
    assert _health_time(server.url) < 1.0
    assert processes.http("POST", server.url + steady, {"n": 1}) == (200, {"pong": {"n": 1}})
    hang.join(LIMIT + SLACK)
    assert not hang.is_alive()


def test_sigterm_stops_the_server_during_a_hanging_registration(tmp_path):
    server = processes.start_server(tmp_path, env={"FLUX_REGISTRATION_TIMEOUT": "60"})
    try:
        assert server.proc is not None
        _register_in_background(server.url, "import time\ntime.sleep(3600)\n", 30.0)
        deadline = time.monotonic() + 10
        sandboxes: list[int] = []
        while not sandboxes and time.monotonic() < deadline:
            sandboxes = [
                pid
                for pid in processes.children_of(server.proc.pid)
                if b"sandbox_child" in Path(f"/proc/{pid}/cmdline").read_bytes()
            ]
            time.sleep(0.05)
        assert sandboxes, "no sandbox process was started for the registration"
        os.kill(server.proc.pid, signal.SIGTERM)
        try:
            server.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail("SIGTERM did not stop the server within 15 s")
        time.sleep(0.5)
        assert not [pid for pid in sandboxes if processes.alive(pid)], (
            "a sandbox outlived the server"
        )
    finally:
        server.stop()
