"""The CLI's first-hour traps, in process: bounded uploads, multi-file registration, timeouts,
field errors of a 422, `delete --force`, and start failures told in one line."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from aiohttp import web
from click.testing import CliRunner, Result

from adapters.cli.client import ApiError, FluxClient, NoAnswer
from adapters.cli.failures import describe, redact
from adapters.cli.main import cli
from adapters.cli.uploads import collect
from core.errors import FluxError


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def one_error_line(result: Result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


class FakeServer:
    """An aiohttp server on 127.0.0.1 in a thread: canned answers, every request recorded with
    its multipart parts."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], tuple[int, Any]] = {}
        self.received: list[dict[str, Any]] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        assert self._ready.wait(10)

    async def _handle(self, request: web.Request) -> web.Response:
        record: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "content_type": request.content_type,
            "parts": [],
            "body": b"",
        }
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            async for part in reader:
                record["parts"].append(
                    (part.name, part.filename, await part.read())  # type: ignore[union-attr]
                )
        else:
            record["body"] = await request.read()
        self.received.append(record)
        status, body = self.answers.get((request.method, request.path), (404, {"error": "x"}))
        return web.json_response(body, status=status)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self._ready.set()
        self._loop.run_forever()


@pytest.fixture(scope="module")
def fake() -> FakeServer:
    return FakeServer()


@pytest.fixture()
def server(fake: FakeServer) -> Iterator[FakeServer]:
    fake.answers.clear()
    fake.received.clear()
    yield fake


class SilentServer:
    """Accepts connections and never answers."""

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
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture()
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


# --- uploads -----------------------------------------------------------------------------------


def test_a_directory_is_every_py_file_in_it_sorted(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("import helpers\n")
    (tmp_path / "helpers.py").write_text("vat = 0.2\n")
    (tmp_path / "notes.txt").write_text("not a module")
    (tmp_path / "sub").mkdir()
    assert collect((tmp_path,), 1000) == [
        ("helpers.py", b"vat = 0.2\n"),
        ("main.py", b"import helpers\n"),
    ]


def test_files_are_named_relative_to_their_common_directory(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.py").write_text("x = 1\n")
    (tmp_path / "b" / "y.py").write_text("y = 1\n")
    names = [name for name, _ in collect((tmp_path / "a" / "x.py", tmp_path / "b" / "y.py"), 100)]
    assert names == ["a/x.py", "b/y.py"]
    with pytest.raises(click.BadParameter, match="both be uploaded"):
        collect((tmp_path / "a" / "x.py", tmp_path / "a" / "x.py"), 100)


def test_devices_and_fifos_are_refused_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(click.BadParameter, match="not a regular file"):
        collect((Path("/dev/zero"),), 1000)
    fifo = tmp_path / "pipe.py"
    os.mkfifo(fifo)
    with pytest.raises(click.BadParameter, match="not a regular file"):
        collect((fifo,), 1000)
    with pytest.raises(click.BadParameter, match="cannot read"):
        collect((tmp_path / "missing.py",), 1000)
    assert time.monotonic() - started < 2


def test_the_upload_limit_counts_every_file(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_bytes(b"a" * 60)
    (tmp_path / "b.py").write_bytes(b"b" * 60)
    assert len(collect((tmp_path / "a.py",), 60)) == 1
    with pytest.raises(click.BadParameter, match="max_upload_bytes"):
        collect((tmp_path,), 100)


def test_register_dev_zero_is_one_line(server: FakeServer) -> None:
    result = invoke("workflow", "register", "/dev/zero", "--server-url", server.url)
    assert result.exit_code == 2
    assert "not a regular file" in one_error_line(result)
    assert server.received == []


def test_register_of_a_too_large_file_is_one_line(server: FakeServer, tmp_path: Path) -> None:
    big = tmp_path / "big.py"
    big.write_bytes(b"#" * 200)
    env = {"FLUX_MAX_UPLOAD_BYTES": "100"}
    result = invoke("workflow", "register", str(big), "--server-url", server.url, env=env)
    assert result.exit_code == 2
    assert "max_upload_bytes (100 bytes)" in one_error_line(result)
    assert server.received == []


# --- multi-file registration -----------------------------------------------------------------

ANSWER = {
    "workflows": [
        {"ref": "shop/checkout", "version": 1, "created": True},
        {"ref": "shop/refund", "version": 2, "created": False},
    ]
}


def test_several_files_go_up_in_one_multipart_request(server: FakeServer, tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("from helpers import vat\n")
    (tmp_path / "helpers.py").write_text("vat = 0.2\n")
    server.answers[("POST", "/workflows")] = (201, ANSWER)
    result = invoke("workflow", "register", str(tmp_path), "--server-url", server.url)
    assert result.exit_code == 0, result.stderr
    (request,) = server.received
    assert request["content_type"] == "multipart/form-data"
    assert request["parts"] == [
        ("file", "helpers.py", b"vat = 0.2\n"),
        ("file", "main.py", b"from helpers import vat\n"),
    ]
    assert result.stdout.splitlines() == [
        "helpers.py, main.py: 2 workflow(s)",
        "  shop/checkout v1 (registered)",
        "  shop/refund v2 (unchanged)",
    ]
    result = invoke(
        "workflow",
        "register",
        str(tmp_path / "main.py"),
        str(tmp_path / "helpers.py"),
        "--server-url",
        server.url,
        "--format",
        "json",
    )
    assert json.loads(result.stdout) == ANSWER
    assert [name for _, name, _ in server.received[1]["parts"]] == ["main.py", "helpers.py"]


def test_one_file_is_uploaded_as_before(server: FakeServer, tmp_path: Path) -> None:
    (tmp_path / "wf.py").write_text("x = 1\n")
    server.answers[("POST", "/workflows")] = (201, {"workflows": []})
    result = invoke("workflow", "register", str(tmp_path / "wf.py"), "--server-url", server.url)
    assert result.exit_code == 0, result.stderr
    (request,) = server.received
    assert request["content_type"] == "text/x-python"
    assert request["query"] == {"filename": "wf.py"}
    assert request["body"] == b"x = 1\n"


def test_a_refused_multi_file_upload_is_one_line(server: FakeServer, tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("a = 1\n")
    (tmp_path / "b.py").write_text("b = 1\n")
    body = {"error": "invalid_request", "message": "expected a text/x-python body"}
    server.answers[("POST", "/workflows")] = (400, body)
    result = invoke("workflow", "register", str(tmp_path), "--server-url", server.url)
    assert result.exit_code == 1
    assert one_error_line(result) == "error: expected a text/x-python body (400)"


# --- timeouts --------------------------------------------------------------------------------


def test_a_server_that_never_answers_is_given_up_on(silent: SilentServer) -> None:
    started = time.monotonic()
    with pytest.raises(NoAnswer, match="within 0.3s"):
        FluxClient(silent.url, timeout=0.3).request("GET", "/workflows")
    assert time.monotonic() - started < 3


def test_timeout_flag_and_setting(silent: SilentServer) -> None:
    started = time.monotonic()
    result = invoke("workflow", "list", "--server-url", silent.url, "--timeout", "0.5")
    assert result.exit_code == 1
    assert one_error_line(result) == (
        f"error: no answer from {silent.url} within 0.5s (a longer wait: --timeout)"
    )
    result = invoke("service", "list", "--server-url", silent.url, env={"FLUX_CLIENT_TIMEOUT": "1"})
    assert "within 1s" in one_error_line(result)
    result = invoke(
        "workflow", "run", "shop/checkout", "--server-url", silent.url, "--timeout", "0.5"
    )
    assert "within 0.5s" in one_error_line(result)
    assert time.monotonic() - started < 10
    result = invoke("workflow", "list", "--timeout", "0", "--server-url", silent.url)
    assert result.exit_code == 2


def test_client_timeout_setting_is_checked() -> None:
    result = invoke("workflow", "list", env={"FLUX_CLIENT_TIMEOUT": "-1"})
    assert result.exit_code == 2
    assert "client_timeout" in one_error_line(result)


# --- error bodies ----------------------------------------------------------------------------

INVALID = {
    "error": "invalid_input",
    "message": "input does not match InvoiceInput: 2 errors",
    "errors": [
        {"loc": ["amount"], "msg": "Input should be a valid number", "type": "float_parsing"},
        {"loc": ["customer_id"], "msg": "Field required", "type": "missing"},
    ],
}


def test_a_422_names_every_field(server: FakeServer) -> None:
    server.answers[("POST", "/workflows/billing/invoice/run/stream")] = (422, INVALID)
    result = invoke("workflow", "run", "billing/invoice", "{}", "--server-url", server.url)
    assert result.exit_code == 1
    assert one_error_line(result) == (
        "error: input does not match InvoiceInput: 2 errors: amount: Input should be a valid "
        "number; customer_id: Field required (422)"
    )
    assert result.stdout == ""
    result = invoke(
        "workflow", "run", "billing/invoice", "{}", "--server-url", server.url, "--format", "json"
    )
    assert result.exit_code == 1
    assert json.loads(result.stdout) == INVALID
    one_error_line(result)


def test_a_message_that_names_its_fields_is_not_repeated() -> None:
    body = {
        "message": "amount: must be a number",
        "errors": [{"loc": ["amount"], "msg": "must be a number"}],
    }
    assert ApiError(422, body).format_message() == "amount: must be a number (422)"
    body = {"message": "bad", "errors": [{"loc": [], "msg": "expected an object"}]}
    assert ApiError(422, body).format_message() == "bad: input: expected an object (422)"


def test_delete_in_use_names_the_count_and_force(server: FakeServer) -> None:
    body = {"error": "workflow_in_use", "message": "2 executions", "count": 2}
    server.answers[("DELETE", "/workflows/shop/approve")] = (409, body)
    result = invoke("workflow", "delete", "shop/approve", "--yes", "--server-url", server.url)
    assert result.exit_code == 1
    assert one_error_line(result) == (
        "error: shop/approve has 2 PAUSED or RUNNING execution(s); 'flux workflow delete "
        "shop/approve --force' cancels them and deletes it (409)"
    )
    assert server.received[-1]["query"] == {}
    server.answers[("DELETE", "/workflows/shop/approve")] = (200, {"deleted": 1})
    result = invoke(
        "workflow", "delete", "shop/approve", "--yes", "--force", "--server-url", server.url
    )
    assert result.exit_code == 0
    assert server.received[-1]["query"] == {"force": "true"}


# --- start failures --------------------------------------------------------------------------


def test_start_failures_are_described() -> None:
    bind = OSError(errno.EADDRINUSE, "error while attempting to bind on address: in use")
    assert describe(bind, address="127.0.0.1:8000") == (
        "cannot listen on http://127.0.0.1:8000: address already in use"
    )
    damaged = sqlite3.DatabaseError("file is not a database")
    assert describe(damaged, database_url="sqlite:////tmp/x/flux.db") == (
        "the database file /tmp/x/flux.db is not a Flux database or is damaged "
        "(file is not a database)"
    )
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed")
    assert describe(refused, database_url="postgresql://u:secret@db:5432/flux") == (
        "cannot reach the database postgresql://u:***@db:5432/flux (connection refused)"
    )
    held = FluxError("the database is used by the server with PID 4242")
    try:
        try:
            raise held
        except FluxError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as wrapped:
        assert describe(wrapped) == "the database is used by the server with PID 4242"
    assert describe(ExceptionGroup("g", [ValueError("x"), held])) == held.message
    assert describe(ValueError("a bug")) is None
    assert redact("postgresql://127.0.0.1:1/x") == "postgresql://127.0.0.1:1/x"
