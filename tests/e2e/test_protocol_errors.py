"""Every answer JSON, with real processes: what aiohttp's parser refuses before any middleware
(a request line over 8 KiB, an oversized header, an unknown method), 405s and OPTIONS with
`Allow`, the standalone process's traps (an encoded path, 401 before 404, `/mcp` when off, the
start report) and the minimum of logs (an access line per request, a failed run's traceback)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import processes

SERVICE = "proto"

SOURCE = """
from flux import ExecutionContext, workflow


@workflow.with_options(namespace="proto")
async def echo(ctx: ExecutionContext):
    return {"echo": ctx.input}


@workflow.with_options(namespace="proto")
async def boom(ctx: ExecutionContext):
    raise ValueError("kaboom-in-the-workflow")
"""


def raw_exchange(
    port: int, data: bytes, timeout: float = 10.0
) -> tuple[int, dict[str, str], bytes]:
    """Send `data` as is; (status, headers, body) of the answer, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
            head, sep, body = received.partition(b"\r\n\r\n")
            if sep:
                headers = _headers(head)
                if len(body) >= int(headers.get("content-length", "-1")) >= 0:
                    break
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, _headers(head), body


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}


LONG_LINE = b"GET /" + b"a" * 9216 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
BIG_HEADER = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20480 + b"\r\n\r\n"
BREW = b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Iterator[tuple[processes.FluxProcess, processes.FluxProcess]]:
    cwd = tmp_path_factory.mktemp("protocol")
    server = processes.start_server(cwd)
    standalone = None
    try:
        assert processes.register_source(server.url, SOURCE, "proto.py")[0] == 201
        status, body = processes.http(
            "POST", f"{server.url}/services", {"name": SERVICE, "namespaces": ["proto"]}
        )
        assert status == 201, body
        standalone = processes.start_standalone(cwd, SERVICE, server.url, "--no-mcp")
        yield server, standalone
    finally:
        if standalone is not None:
            standalone.stop()
        server.stop()


def both(plain: tuple[processes.FluxProcess, processes.FluxProcess]) -> list[int]:
    return [process.port for process in plain]


# -- 1. the parser's refusals are JSON, and never echo the input ------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "echoed"),
    [(LONG_LINE, b"aaaaaaaa"), (BIG_HEADER, b"bbbbbbbb"), (BREW, b"BREW")],
    ids=["request-line-9KiB", "header-20KiB", "unknown-method"],
)
def test_what_the_parser_refuses_is_a_json_400(plain, request_bytes, echoed):
    for port in both(plain):
        status, headers, body = raw_exchange(port, request_bytes)
        assert status == 400, body
        assert headers["content-type"].startswith("application/json")
        answer = json.loads(body)
        assert answer["error"] == "invalid_request"
        assert answer["message"]
        assert echoed not in body


def test_the_processes_still_answer_after_garbage(plain):
    for port in both(plain):
        raw_exchange(port, BREW)
        status, _ = processes.http("GET", f"http://127.0.0.1:{port}/health")
        assert status == 200


# -- 2. 405 names the allowed methods; OPTIONS is answered with them ----------------------


def test_405_and_options_on_the_main_server(plain):
    server, _ = plain
    status, headers, body = raw_exchange(
        server.port, b"DELETE /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 405
    assert {"GET", "OPTIONS"} <= {m.strip() for m in headers["allow"].split(",")}
    assert json.loads(body)["error"] == "method_not_allowed"
    status, headers, body = raw_exchange(
        server.port, b"OPTIONS /services HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 204, body
    assert {"GET", "POST", "OPTIONS"} <= {m.strip() for m in headers["allow"].split(",")}


def test_405_and_options_on_the_standalone_process(plain):
    _, standalone = plain
    status, headers, body = raw_exchange(
        standalone.port, b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 405
    assert "POST" in headers["allow"]
    assert json.loads(body)["error"] == "method_not_allowed"
    status, headers, _ = raw_exchange(
        standalone.port, b"OPTIONS /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 204
    assert {"POST", "OPTIONS"} <= {m.strip() for m in headers["allow"].split(",")}


# -- 3. an encoded path is forwarded decoded, encoded once ---------------------------------


def test_an_encoded_name_reaches_the_same_workflow(plain):
    server, standalone = plain
    for base in (f"{server.url}/services/{SERVICE}", standalone.url):
        status, body = processes.http("POST", f"{base}/%65cho", {"x": 1})
        assert (status, body) == (200, {"echo": {"x": 1}}), base
        status, body = processes.http("POST", f"{base}/%65cho/%61sync", {"x": 2})
        assert status == 202, body


# -- 5. /mcp when off, the start report, the warning beyond loopback ------------------------


def test_mcp_off_is_a_clear_404(plain):
    _, standalone = plain
    status, body = processes.http("POST", f"{standalone.url}/mcp", {})
    assert status == 404
    assert body == {"error": "not_found", "message": "MCP is not enabled on this process"}


def test_the_start_report_says_mcp_and_counts(plain):
    _, standalone = plain
    log = processes.until(lambda: "2 endpoints" in standalone.log() and standalone.log(), 10)
    assert "MCP off" in log
    assert "flux service: service 'proto': 2 endpoints" in log
    assert "warning" not in log  # loopback: nothing to warn about


def test_beyond_loopback_with_no_credentials_it_warns(plain, tmp_path):
    server, _ = plain
    port = processes.free_port()
    args = ["service", "start", SERVICE, "--host", "0.0.0.0", "--port", str(port)]
    process = processes.FluxProcess([*args, "--server-url", server.url], tmp_path, port)
    process.start()
    try:
        log = processes.until(lambda: "endpoints" in process.log() and process.log(), 10)
        assert "warning: listening on 0.0.0.0" in log
        assert re.search(r"MCP (off|at http://0\.0\.0\.0:\d+/mcp)", log)
    finally:
        process.stop()


# -- 6. the minimum of logs -------------------------------------------------------------------


def test_access_lines_on_both_processes(plain):
    server, standalone = plain
    status, body = processes.http("POST", f"{standalone.url}/echo/async", {"y": 1})
    assert status == 202, body
    execution_id = body["execution_id"]
    line = rf"INFO flux\.access: POST /echo/async 202 \d+\.\dms {execution_id}"
    assert processes.until(lambda: re.search(line, standalone.log()), 5), standalone.log()
    upstream = rf"flux\.access: POST /services/{SERVICE}/echo/async 202 \d+\.\dms {execution_id}"
    assert processes.until(lambda: re.search(upstream, server.log()), 5), server.log()
    status, _ = processes.http("GET", f"{server.url}/services/{SERVICE}/echo/status/{execution_id}")
    assert status == 200
    status_line = (
        rf"GET /services/{SERVICE}/echo/status/{execution_id} 200 \d+\.\dms {execution_id}"
    )
    assert processes.until(lambda: re.search(status_line, server.log()), 5)
    assert processes.until(lambda: re.search(r"flux\.access: GET /health 200", server.log()), 5)


def test_a_failed_execution_logs_its_traceback(plain):
    server, _ = plain
    status, body = processes.http("POST", f"{server.url}/services/{SERVICE}/boom?detailed=true", {})
    assert status == 500, body
    execution_id = body["execution_id"]

    def logged() -> str | None:
        log = server.log()
        at = log.find(f"execution {execution_id} of proto/boom failed: ValueError")
        return log[at:] if at >= 0 else None

    tail = processes.until(logged, 10)
    assert tail, server.log()
    assert "ERROR flux.engine" in server.log()
    assert "Traceback (most recent call last)" in tail
    assert "kaboom-in-the-workflow" in tail


# -- 4. 401 before 404 at a standalone process with its own key ---------------------------------


def _create_key(cwd: Path, name: str, *permissions: str) -> str:
    args = ["auth", "key", "create", name]
    for permission in permissions:
        args += ["--permission", permission]
    done = subprocess.run(
        processes.flux_command(*args),
        cwd=cwd,
        env=processes.child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def secured(tmp_path_factory) -> Iterator[tuple[processes.FluxProcess, str]]:
    """A main server with auth on, and a standalone process with its own (admin) key."""
    cwd = tmp_path_factory.mktemp("protocol-auth")
    (cwd / "flux.toml").write_text("[flux.security.auth]\nenabled = true\n")
    admin = _create_key(cwd, "admin", "admin")
    runner = _create_key(cwd, "runner", "workflow:proto:*")
    server = processes.start_server(cwd)
    standalone = None
    try:
        auth = {"Authorization": f"Bearer {admin}"}
        status, body = processes.http(
            "POST",
            f"{server.url}/workflows?filename=proto.py",
            raw=SOURCE.encode(),
            headers={"Content-Type": "text/x-python", **auth},
        )
        assert status == 201, body
        status, body = processes.http(
            "POST",
            f"{server.url}/services",
            {"name": SERVICE, "namespaces": ["proto"]},
            headers=auth,
        )
        assert status == 201, body
        port = processes.free_port()
        args = ["service", "start", SERVICE, "--host", "127.0.0.1", "--port", str(port)]
        standalone = processes.FluxProcess(
            [*args, "--server-url", server.url, "--no-mcp"], cwd, port, {"FLUX_API_KEY": admin}
        ).start()
        yield standalone, runner
    finally:
        if standalone is not None:
            standalone.stop()
        server.stop()


def test_anonymous_callers_get_401_for_every_name(secured):
    standalone, runner = secured
    for name in ("echo", "nope", "echo", "nope"):  # before and after the cache is warm
        status, body = processes.http("POST", f"{standalone.url}/{name}", {})
        assert status == 401, (name, body)
        assert body["error"] == "unauthenticated"
    auth = {"Authorization": f"Bearer {runner}"}
    status, body = processes.http("POST", f"{standalone.url}/nope", {}, headers=auth)
    assert status == 404, body
    status, body = processes.http("POST", f"{standalone.url}/echo", {"z": 1}, headers=auth)
    assert (status, body) == (200, {"echo": {"z": 1}})
