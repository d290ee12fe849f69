"""The CLI's first-hour traps with real processes: every one ends in ONE line on stderr and a
non-zero exit code, never a traceback or a hang."""

from __future__ import annotations

import json
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.processes import FluxProcess, child_env, flux_command, free_port, start_server


def flux_in(
    cwd: Path, *args: str, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        flux_command(*args),
        cwd=cwd,
        env=child_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The failure's only stderr line."""
    assert result.returncode != 0, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture()
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


# --- start failures --------------------------------------------------------------------------


def test_start_server_on_a_port_in_use(tmp_path: Path, taken_port: int) -> None:
    result = flux_in(tmp_path, "start", "server", "--host", "127.0.0.1", "--port", str(taken_port))
    assert one_line(result) == (
        f"error: cannot listen on http://127.0.0.1:{taken_port}: address already in use"
    )
    assert result.returncode == 1


def test_service_start_on_a_port_in_use(tmp_path: Path, taken_port: int) -> None:
    # Needs adapters/standalone_process.py `serve_standalone` to print its "serving ..." line only once
    # the port is bound (see the report of the CLI hardening): until then that line comes first.
    args = ["service", "start", "billing", "--host", "127.0.0.1", "--port", str(taken_port)]
    result = flux_in(tmp_path, *args, "--no-mcp", "--server-url", "http://127.0.0.1:9")
    assert one_line(result) == (
        f"error: cannot listen on http://127.0.0.1:{taken_port}: address already in use"
    )


def test_start_on_a_garbage_database_file(tmp_path: Path) -> None:
    (tmp_path / ".flux").mkdir()
    database = tmp_path / ".flux" / "flux.db"
    database.write_bytes(b"this is not sqlite at all\n" * 200)
    result = flux_in(tmp_path, "start", "server", "--port", str(free_port()))
    assert one_line(result) == (
        f"error: the database file {database} is not a Flux database or is damaged "
        "(file is not a database)"
    )
    assert "Traceback" not in result.stdout


def test_start_on_a_truncated_database_file(tmp_path: Path) -> None:
    database = tmp_path / "flux.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE filler (x TEXT)")
        db.executemany("INSERT INTO filler VALUES (?)", [("x" * 500,)] * 200)
    data = database.read_bytes()
    database.write_bytes(data[: len(data) // 3])
    result = flux_in(
        tmp_path,
        "start",
        "server",
        "--port",
        str(free_port()),
        "--database-url",
        "sqlite:///flux.db",
    )
    assert "is not a Flux database or is damaged" in one_line(result)


def test_a_second_server_on_the_same_database(tmp_path: Path) -> None:
    first = start_server(tmp_path)
    try:
        assert first.proc is not None
        result = flux_in(tmp_path, "start", "server", "--port", str(free_port()))
        line = one_line(result)
        assert result.returncode == 1
        assert str(first.proc.pid) in line and "flux.db" in line, line
    finally:
        first.stop()


def test_auth_on_an_unreachable_postgres(tmp_path: Path) -> None:
    result = flux_in(
        tmp_path, "auth", "key", "list", "--database-url", "postgresql://flux:pw@127.0.0.1:1/x"
    )
    assert one_line(result) == (
        "error: cannot reach the database postgresql://flux:***@127.0.0.1:1/x (connection refused)"
    )


# --- bounded reads and waits ---------------------------------------------------------------------


def test_register_dev_zero_ends_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    result = flux_in(
        tmp_path, "workflow", "register", "/dev/zero", "--server-url", "http://127.0.0.1:9"
    )
    assert "/dev/zero is not a regular file" in one_line(result)
    assert result.returncode == 2 and time.monotonic() - started < 20


class SilentServer:
    """A raw socket on 127.0.0.1 that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return


@pytest.fixture()
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.sock.close()
    for conn in server.held:
        conn.close()


def test_a_silent_server_is_given_up_on(tmp_path: Path, silent: SilentServer) -> None:
    started = time.monotonic()
    result = flux_in(tmp_path, "workflow", "list", "--server-url", silent.url, "--timeout", "1")
    assert (
        one_line(result)
        == f"error: no answer from {silent.url} within 1s (a longer wait: --timeout)"
    )
    result = flux_in(
        tmp_path, "service", "list", "--server-url", silent.url, FLUX_CLIENT_TIMEOUT="1"
    )
    assert "within 1s" in one_line(result)
    result = flux_in(
        tmp_path,
        "workflow",
        "run",
        "a/b",
        "--mode",
        "async",
        "--server-url",
        silent.url,
        FLUX_CLIENT_TIMEOUT="1",
    )
    assert "within 1s" in one_line(result)
    assert time.monotonic() - started < 30


def test_a_sync_run_waits_past_client_timeout_until_interrupted(
    tmp_path: Path, silent: SilentServer
) -> None:
    proc = subprocess.Popen(
        flux_command("workflow", "run", "a/b", "--server-url", silent.url),
        cwd=tmp_path,
        env=child_env({"FLUX_CLIENT_TIMEOUT": "0.5"}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert err.splitlines() == ["error: interrupted before the server named the execution"]


# --- against a real server -----------------------------------------------------------------------

TRAPS = """
import asyncio

from pydantic import BaseModel

from flux import ExecutionContext, pause, workflow


class InvoiceInput(BaseModel):
    customer_id: str
    amount: float


@workflow.with_options(namespace="traps")
async def invoice(ctx: ExecutionContext[InvoiceInput]):
    return {"total": ctx.input.amount}


@workflow.with_options(namespace="traps")
async def slow(ctx: ExecutionContext):
    await asyncio.sleep(ctx.input or 30)
    return {"slept": ctx.input}


@workflow.with_options(namespace="traps")
async def approve(ctx: ExecutionContext):
    return {"approved": await pause("approval")}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FluxProcess]:
    cwd = tmp_path_factory.mktemp("flux-traps")
    process = start_server(cwd, free_port())
    try:
        (cwd / "traps.py").write_text(TRAPS)
        registered = flux(process, "workflow", "register", "traps.py")
        assert registered.returncode == 0, registered.stderr
        yield process
    finally:
        process.stop()


def flux(server: FluxProcess, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return flux_in(server.cwd, *args, "--server-url", server.url, **env)


def test_a_422_prints_each_field_error(server: FluxProcess) -> None:
    result = flux(server, "workflow", "run", "traps/invoice", '{"amount": "lots"}')
    line = one_line(result)
    # Each field by name with its reason, not just "2 errors".
    assert re.search(r"amount: .*number", line), line
    assert re.search(r"customer_id: field required", line, re.IGNORECASE), line
    assert line.endswith("(422)") and "2 errors" not in line
    assert result.stdout == ""
    result = flux(
        server, "workflow", "run", "traps/invoice", '{"amount": "lots"}', "--format", "json"
    )
    one_line(result)
    body = json.loads(result.stdout)
    assert body["error"] == "invalid_input"
    assert {tuple(e["loc"]) for e in body["errors"]} == {("amount",), ("customer_id",)}


def test_a_sync_run_outlives_the_client_timeout(server: FluxProcess) -> None:
    result = flux(server, "workflow", "run", "traps/slow", "2", FLUX_CLIENT_TIMEOUT="0.5")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"slept": 2}
    result = flux(server, "workflow", "run", "traps/slow", "5", "--timeout", "1")
    assert "within 1s" in one_line(result)


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_names_its_execution(server: FluxProcess, how: signal.Signals) -> None:
    proc = subprocess.Popen(
        flux_command("workflow", "run", "traps/slow", "60", "--server-url", server.url),
        cwd=server.cwd,
        env=child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(4)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(how)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and out == ""
    (line,) = err.splitlines()
    found = re.fullmatch(
        r"error: interrupted; execution (\S+) goes on: follow it with "
        r"'flux workflow status traps/slow (\S+)'",
        line,
    )
    assert found and found[1] == found[2], line
    status = flux(server, "workflow", "status", "traps/slow", found[1], "--format", "json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["state"] == "RUNNING"


def test_delete_with_paused_executions_needs_force(server: FluxProcess) -> None:
    # Needs the server side of `?force=true` (409 with `count` while PAUSED or RUNNING
    # executions exist), built in another change of the same hardening issue.
    paused = flux(server, "workflow", "run", "traps/approve", "--format", "json")
    assert json.loads(paused.stdout)["state"] == "PAUSED"
    result = flux(server, "workflow", "delete", "traps/approve", "--yes")
    line = one_line(result)
    assert "PAUSED or RUNNING execution(s)" in line and "--force" in line and line.endswith("(409)")
    result = flux(server, "workflow", "delete", "traps/approve", "--yes", "--force")
    assert result.returncode == 0, result.stderr
    assert "Deleted" in result.stdout


def test_register_a_directory_of_modules_that_import_each_other(server: FluxProcess) -> None:
    # Needs the server side of multi-file registration (one `file` part per module in a
    # multipart/form-data POST /workflows), built in another change of the same hardening issue.
    package = server.cwd / "billing_app"
    package.mkdir()
    (package / "helpers.py").write_text("def vat(amount):\n    return round(amount * 0.2, 2)\n")
    (package / "invoices.py").write_text(
        "from helpers import vat\n\n"
        "from flux import ExecutionContext, workflow\n\n\n"
        '@workflow.with_options(namespace="multi")\n'
        "async def taxed(ctx: ExecutionContext):\n"
        "    return {'vat': vat(ctx.input)}\n"
    )
    result = flux(server, "workflow", "register", str(package))
    assert result.returncode == 0, result.stderr
    assert "multi/taxed" in result.stdout
    run = flux(server, "workflow", "run", "multi/taxed", "100")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"vat": 20.0}
