"""The `flux` CLI end to end.

Two halves: the CLI in-process against a small recorded HTTP server (exact renderings, request
bodies, error lines), and the real thing: `flux start server` as a subprocess driven by `flux`
subprocesses, the seed's quick start first.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner

from adapters.cli.main import cli
from tests.e2e.processes import (
    EXAMPLES,
    FluxProcess,
    child_env,
    flux_command,
    free_port,
    http,
    start_server,
)

# --- a recorded server for the in-process half ----------------------------------------------


class RecordedServer:
    """Answers canned bodies per (method, path) and records what it received."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], tuple[int, Any]] = {}
        self.received: list[dict[str, Any]] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def answer(self, method: str, path: str, status: int, body: Any) -> None:
        self.answers[(method, path)] = (status, body)

    async def _handle(self, request: web.Request) -> web.Response:
        text = await request.text()
        self.received.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "authorization": request.headers.get("Authorization"),
                "content_type": request.content_type,
                "body": text,
            }
        )
        status, body = self.answers.get(
            (request.method, request.path),
            (404, {"error": "not_found", "message": f"nothing at {request.path}"}),
        )
        if isinstance(body, str) and body.startswith("event:"):
            return web.Response(text=body, status=status, content_type="text/event-stream")
        return web.json_response(body, status=status)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def __enter__(self) -> RecordedServer:
        self._thread.start()
        assert self._ready.wait(10), "recorded server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def recorded() -> Iterator[RecordedServer]:
    with RecordedServer() as server:
        yield server


def invoke(*args: str, env: dict[str, str] | None = None):
    """Run `flux` in-process with no FLUX_* variable leaking in from the outside."""
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FLUX_")}
    clean.update(env or {})
    return CliRunner(env=clean).invoke(cli, list(args), catch_exceptions=False)


def one_error_line(result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


SEED_SERVICE = {
    "name": "billing",
    "namespaces": ["billing", "payments"],
    "workflows": [],
    "exclusions": ["billing/internal"],
    "mcp_enabled": False,
    "revision": 2,
    "catalog_revision": 9,
    "endpoints": [
        {"name": "invoice", "ref": "billing/invoice", "namespace": "billing", "version": 3},
        {"name": "refund", "ref": "billing/refund", "namespace": "billing", "version": 1},
        {
            "name": "process_payment",
            "ref": "payments/process_payment",
            "namespace": "payments",
            "version": 2,
        },
        {"name": "receipt", "ref": "billing/receipt", "namespace": "billing", "version": 1},
    ],
    "collisions": [],
    "unresolved": [],
    "reserved": [],
}


def test_service_show_matches_the_seed_layout(recorded: RecordedServer) -> None:
    recorded.answer("GET", "/services/billing", 200, SEED_SERVICE)
    result = invoke("service", "show", "billing", "--server-url", recorded.url)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "Service: billing\n"
        "Namespaces: billing, payments\n"
        "Exclusions: billing/internal\n"
        "MCP: disabled\n"
        "Resolved endpoints (4):\n"
        "  /invoice → billing/invoice (v3)\n"
        "  /refund → billing/refund (v1)\n"
        "  /process_payment → payments/process_payment (v2)\n"
        "  /receipt → billing/receipt (v1)\n"
    )


def test_service_show_lists_collisions_unresolved_and_reserved(recorded: RecordedServer) -> None:
    body = dict(
        SEED_SERVICE,
        workflows=["analytics/report"],
        mcp_enabled=True,
        endpoints=[SEED_SERVICE["endpoints"][0]],
        collisions=[
            {
                "name": "process",
                "refs": ["analytics/process", "billing/process"],
                "namespaces": ["analytics", "billing"],
            }
        ],
        unresolved=["billing/gone"],
        reserved=["health"],
    )
    recorded.answer("GET", "/services/billing", 200, body)
    result = invoke("service", "show", "billing", "--server-url", recorded.url)
    assert result.stdout.splitlines()[2:] == [
        "Workflows: analytics/report",
        "Exclusions: billing/internal",
        "MCP: enabled",
        "Resolved endpoints (1):",
        "  /invoice → billing/invoice (v3)",
        "Collisions (1):",
        "  /process → analytics/process, billing/process",
        "Unresolved (1):",
        "  billing/gone",
        "Reserved by the standalone process: /health",
    ]

    as_json = invoke("service", "show", "billing", "--server-url", recorded.url, "--format", "json")
    assert json.loads(as_json.stdout) == body


def test_selector_commands_send_the_update_fields(recorded: RecordedServer) -> None:
    recorded.answer("PUT", "/services/billing", 200, SEED_SERVICE)
    recorded.answer("POST", "/services", 201, SEED_SERVICE)
    url = ("--server-url", recorded.url)
    commands = [
        (
            ["service", "create", "billing", "--namespace", "billing", "--exclude", "billing/x"],
            {
                "name": "billing",
                "namespaces": ["billing"],
                "workflows": [],
                "exclusions": ["billing/x"],
                "mcp_enabled": False,
            },
        ),
        (
            ["service", "add", "billing", "--namespace", "payments", "--workflow", "a/b"],
            {"add_namespaces": ["payments"], "add_workflows": ["a/b"]},
        ),
        (
            ["service", "remove", "billing", "--namespace", "payments"],
            {"remove_namespaces": ["payments"], "remove_workflows": []},
        ),
        (["service", "exclude", "billing", "billing/debug"], {"add_exclusions": ["billing/debug"]}),
        (
            ["service", "include", "billing", "billing/debug"],
            {"remove_exclusions": ["billing/debug"]},
        ),
        (["service", "update", "billing", "--mcp"], {"mcp_enabled": True}),
        (["service", "update", "billing", "--no-mcp"], {"mcp_enabled": False}),
    ]
    for args, expected in commands:
        result = invoke(*args, *url)
        assert result.exit_code == 0, (args, result.stderr)
        assert json.loads(recorded.received[-1]["body"]) == expected, args
        assert "Service: billing" in result.stdout


def test_stream_prints_each_event_and_fails_on_a_failed_end(recorded: RecordedServer) -> None:
    final = {
        "execution_id": "e1",
        "state": "FAILED",
        "output": None,
        "namespace": "shop",
        "workflow": "explode",
        "error": {"type": "ValueError", "message": "boom"},
    }
    running = dict(final, state="RUNNING", error=None)
    started = {"execution_id": "e1", "key": "price#0", "value": None}
    recorded.answer(
        "POST",
        "/workflows/shop/explode/run/stream",
        200,
        f"event: state\ndata: {json.dumps(running)}\n\n"
        f"event: task_started\ndata: {json.dumps(started)}\n\n"
        f"event: state\ndata: {json.dumps(final)}\n\n",
    )
    args = ("workflow", "run", "shop/explode", '{"a": 1}', "--mode", "stream")
    result = invoke(*args, "--server-url", recorded.url)
    assert result.exit_code == 1
    assert result.stdout.splitlines()[:3] == [
        "[state] RUNNING",
        "[task_started] price#0",
        "[state] FAILED",
    ]
    assert "Error: ValueError: boom" in result.stdout
    assert one_error_line(result) == "error: execution e1 failed: ValueError: boom (200)"
    assert json.loads(recorded.received[-1]["body"]) == {"a": 1}

    as_json = invoke(*args, "--server-url", recorded.url, "--format", "json")
    events = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [e["event"] for e in events] == ["state", "task_started", "state"]
    assert events[-1]["data"] == final


def test_api_key_is_sent_as_bearer_token(recorded: RecordedServer) -> None:
    recorded.answer("GET", "/services", 200, {"services": []})
    invoke("service", "list", "--server-url", recorded.url, env={"FLUX_API_KEY": "k-123"})
    invoke("service", "list", "--server-url", recorded.url, "--api-key", "k-456")
    invoke("service", "list", "--server-url", recorded.url)
    assert [r["authorization"] for r in recorded.received] == [
        "Bearer k-123",
        "Bearer k-456",
        None,
    ]


def test_api_key_falls_back_to_the_settings(
    recorded: RecordedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded.answer("GET", "/services", 200, {"services": []})
    monkeypatch.chdir(tmp_path)
    (tmp_path / "flux.toml").write_text('[flux]\napi_key = "k-toml"\n')
    base = ("service", "list", "--server-url", recorded.url)
    invoke(*base)
    invoke(*base, env={"FLUX_API_KEY": "k-env"})
    invoke(*base, "--api-key", "k-flag", env={"FLUX_API_KEY": "k-env"})
    invoke(*base, "--api-key", "", env={"FLUX_API_KEY": "k-env"})
    assert [r["authorization"] for r in recorded.received] == [
        "Bearer k-toml",
        "Bearer k-env",
        "Bearer k-flag",
        None,
    ]


def test_service_start_hands_its_api_key_to_the_standalone_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import adapters.standalone_process

    started: list[Any] = []
    monkeypatch.setattr(adapters.standalone_process, "serve_standalone", started.append)
    monkeypatch.chdir(tmp_path)
    result = invoke("service", "start", "billing", env={"FLUX_API_KEY": "k-own"})
    assert result.exit_code == 0, result.output
    (options,) = started
    assert options.service == "billing"
    assert options.settings.api_key == "k-own"
    assert "k-own" not in repr(options)


def test_server_url_comes_from_env_then_flux_toml(
    recorded: RecordedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded.answer("GET", "/services", 200, {"services": []})
    monkeypatch.chdir(tmp_path)
    (tmp_path / "flux.toml").write_text(f'[flux]\nserver_url = "{recorded.url}"\n')
    assert invoke("service", "list").exit_code == 0
    (tmp_path / "flux.toml").write_text('[flux]\nserver_url = "http://127.0.0.1:9"\n')
    assert invoke("service", "list", env={"FLUX_SERVER_URL": recorded.url}).exit_code == 0
    assert len(recorded.received) == 2


def test_server_error_is_one_line_with_status(recorded: RecordedServer) -> None:
    recorded.answer(
        "GET",
        "/services/ghost",
        404,
        {"error": "service_not_found", "message": "service 'ghost' not found"},
    )
    result = invoke("service", "show", "ghost", "--server-url", recorded.url)
    assert result.exit_code == 1
    assert one_error_line(result) == "error: service 'ghost' not found (404)"
    assert result.stdout == ""


def test_unreachable_server_is_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = invoke("workflow", "list", "--server-url", url)
    assert result.exit_code == 1
    assert one_error_line(result).startswith(f"error: cannot reach {url}")


@pytest.mark.parametrize(
    "args",
    [
        ["service", "create", "Bad Name"],
        ["service", "create", "ok", "--workflow", "a/b/c"],
        ["service", "add", "billing"],
        ["service", "update", "billing"],
        ["workflow", "run", "billing/invoice", "{not json"],
        ["workflow", "show", "9bad"],
        ["service", "show", "billing", "--format", "yaml"],
        ["service", "show", "billing", "--server-url", "localhost:8000"],
        ["service", "start", "Bad!"],
        ["service", "nope"],
    ],
)
def test_usage_errors_exit_2_with_one_line(args: list[str]) -> None:
    url = [] if "--server-url" in args else ["--server-url", "http://127.0.0.1:9"]
    result = invoke(*args, *url)
    assert result.exit_code == 2, result.stdout
    one_error_line(result)


def test_delete_refuses_without_a_terminal_or_yes(recorded: RecordedServer) -> None:
    result = invoke("service", "delete", "billing", "--server-url", recorded.url)
    assert result.exit_code == 2
    assert "--yes" in one_error_line(result)
    result = invoke("workflow", "delete", "billing/invoice", "--server-url", recorded.url)
    assert result.exit_code == 2
    assert recorded.received == []


def test_bad_settings_stop_the_server_command_with_one_line(tmp_path: Path) -> None:
    result = invoke("start", "server", env={"FLUX_PORT": "eighty"})
    assert result.exit_code == 2
    assert "FLUX_PORT" in one_error_line(result)


# --- the real server ------------------------------------------------------------------------

OWN_WORKFLOWS = '''
from pydantic import BaseModel

from flux import ExecutionContext, pause, task, workflow


class InvoiceInput(BaseModel):
    customer_id: str
    amount: float


@task
async def price(amount: float) -> float:
    return round(amount, 2)


@workflow.with_options(namespace="billing")
async def invoice(ctx: ExecutionContext[InvoiceInput]):
    """Issue an invoice."""
    total = await price(ctx.input.amount)
    return {"invoice_id": f"INV-{ctx.execution_id[:6]}", "total": total}
'''

SHOP_WORKFLOWS = '''
from flux import ExecutionContext, pause, workflow


@workflow.with_options(namespace="shop")
async def checkout(ctx: ExecutionContext):
    """Take an order."""
    return {"ordered": ctx.input}


@workflow.with_options(namespace="shop")
async def approve(ctx: ExecutionContext):
    decision = await pause("approval")
    return {"approved": decision}


@workflow.with_options(namespace="shop")
async def explode(ctx: ExecutionContext):
    raise ValueError("boom")


@workflow.with_options(namespace="shop")
async def internal(ctx: ExecutionContext):
    return 1


@workflow.with_options(namespace="shop")
async def health(ctx: ExecutionContext):
    return "ok"


@workflow.with_options(namespace="shop")
async def process(ctx: ExecutionContext):
    return "shop"


'''

# A second module: two `process` functions cannot share one module's namespace.
STATS_WORKFLOWS = """
from flux import ExecutionContext, workflow


@workflow.with_options(namespace="stats")
async def process(ctx: ExecutionContext):
    return "stats"


@workflow.with_options(namespace="stats")
async def report(ctx: ExecutionContext):
    return {"rows": 0}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FluxProcess]:
    cwd = tmp_path_factory.mktemp("flux-cli")
    process = start_server(cwd, free_port())
    try:
        yield process
    finally:
        process.stop()


def flux(server: FluxProcess, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`flux ARGS --server-url URL` as a subprocess, stdin not a terminal."""
    return subprocess.run(
        flux_command(*args, "--server-url", server.url),
        cwd=server.cwd,
        env=child_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def failed(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def json_out(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result))


def test_server_keeps_its_database_under_the_working_directory(server: FluxProcess) -> None:
    assert (server.cwd / ".flux" / "flux.db").exists()


def test_quick_start(server: FluxProcess) -> None:
    example = EXAMPLES / "billing.py"
    target = server.cwd / "billing_workflows.py"
    if example.exists():
        shutil.copy(example, target)
    else:
        target.write_text(OWN_WORKFLOWS)

    # The seed's quick start, command for command.
    out = ok(flux(server, "workflow", "register", "billing_workflows.py"))
    assert "billing/invoice" in out
    ok(flux(server, "service", "create", "billing", "--namespace", "billing"))
    status, body = http(
        "POST",
        f"{server.url}/services/billing/invoice",
        {"customer_id": "C-100", "amount": 99.50},
    )
    assert status == 200, body
    assert isinstance(body, dict) and "invoice_id" in body
    if not example.exists():
        assert body["total"] == 99.5


def test_register_twice_reports_unchanged(server: FluxProcess) -> None:
    (server.cwd / "again.py").write_text(OWN_WORKFLOWS.replace('"billing"', '"again"'))
    first = json_out(flux(server, "workflow", "register", "again.py", "--format", "json"))
    second = json_out(flux(server, "workflow", "register", "again.py", "--format", "json"))
    assert [w["ref"] for w in first["workflows"]] == ["again/invoice"]
    assert second["workflows"][0]["version"] == first["workflows"][0]["version"]
    assert "unchanged" in ok(flux(server, "workflow", "register", "again.py"))


@pytest.fixture(scope="module")
def shop(server: FluxProcess) -> FluxProcess:
    (server.cwd / "shop.py").write_text(SHOP_WORKFLOWS)
    (server.cwd / "stats.py").write_text(STATS_WORKFLOWS)
    ok(flux(server, "workflow", "register", "shop.py"))
    ok(flux(server, "workflow", "register", "stats.py"))
    return server


def test_service_commands_end_to_end(shop: FluxProcess) -> None:
    server = shop
    created = ok(
        flux(
            server, "service", "create", "shop", "--namespace", "shop", "--exclude", "shop/internal"
        )
    )
    assert "Service: shop" in created
    ok(flux(server, "service", "add", "shop", "--namespace", "stats", "--workflow", "shop/gone"))
    ok(flux(server, "service", "update", "shop", "--mcp"))

    shown = ok(flux(server, "service", "show", "shop"))
    assert shown.splitlines() == [
        "Service: shop",
        "Namespaces: shop, stats",
        "Workflows: shop/gone",
        "Exclusions: shop/internal",
        "MCP: enabled",
        "Resolved endpoints (5):",
        "  /approve → shop/approve (v1)",
        "  /checkout → shop/checkout (v1)",
        "  /explode → shop/explode (v1)",
        "  /health → shop/health (v1)",
        "  /report → stats/report (v1)",
        "Collisions (1):",
        "  /process → shop/process, stats/process",
        "Unresolved (1):",
        "  shop/gone",
        "Reserved by the standalone process: /health",
    ]

    # --format json is the HTTP body, unchanged.
    status, body = http("GET", f"{server.url}/services/shop")
    assert status == 200
    assert json_out(flux(server, "service", "show", "shop", "--format", "json")) == body
    status, listed = http("GET", f"{server.url}/services")
    assert json_out(flux(server, "service", "list", "--format", "json")) == listed
    assert "shop" in ok(flux(server, "service", "list"))

    ok(flux(server, "service", "exclude", "shop", "stats/process"))
    after = ok(flux(server, "service", "show", "shop"))
    assert "  /process → shop/process (v1)" in after and "Collisions" not in after
    ok(flux(server, "service", "include", "shop", "stats/process"))
    assert "Collisions (1):" in ok(flux(server, "service", "show", "shop"))

    ok(flux(server, "service", "remove", "shop", "--namespace", "stats", "--workflow", "shop/gone"))
    ok(flux(server, "service", "update", "shop", "--no-mcp"))
    shown = ok(flux(server, "service", "show", "shop"))
    assert "Namespaces: shop\n" in shown and "MCP: disabled" in shown
    assert "Workflows:" not in shown and "Unresolved" not in shown

    duplicate = failed(flux(server, "service", "create", "shop", "--namespace", "shop"))
    assert duplicate.endswith("(409)")

    refused = flux(server, "service", "delete", "shop")
    failed(refused, code=2)
    assert http("GET", f"{server.url}/services/shop")[0] == 200
    ok(flux(server, "service", "delete", "shop", "--yes"))
    gone = failed(flux(server, "service", "show", "shop"))
    assert gone.endswith("(404)") and "shop" in gone


def test_workflow_commands_end_to_end(shop: FluxProcess) -> None:
    server = shop
    status, listed = http("GET", f"{server.url}/workflows?namespace=shop")
    assert status == 200
    assert json_out(
        flux(server, "workflow", "list", "--namespace", "shop", "--format", "json")
    ) == (listed)
    table = ok(flux(server, "workflow", "list", "--namespace", "shop"))
    assert "shop/checkout" in table and "stats/report" not in table

    status, detail = http("GET", f"{server.url}/workflows/shop/checkout")
    assert json_out(flux(server, "workflow", "show", "shop/checkout", "--format", "json")) == detail
    assert "Workflow: shop/checkout" in ok(flux(server, "workflow", "show", "shop/checkout"))

    # sync: the raw output; --detailed: the detailed shape
    assert json_out(flux(server, "workflow", "run", "shop/checkout", '{"id": 7}')) == {
        "ordered": {"id": 7}
    }
    detailed = json_out(
        flux(server, "workflow", "run", "shop/checkout", "[1]", "--detailed", "--format", "json")
    )
    assert detailed["state"] == "COMPLETED" and detailed["output"] == {"ordered": [1]}

    # pause, status, resume
    paused = json_out(flux(server, "workflow", "run", "shop/approve", "--format", "json"))
    assert paused["state"] == "PAUSED" and "resume_url" in paused
    execution_id = paused["execution_id"]
    status_out = ok(flux(server, "workflow", "status", "shop/approve", execution_id))
    assert f"Execution: {execution_id}" in status_out and "State: PAUSED" in status_out
    resumed = json_out(
        flux(
            server,
            "workflow",
            "resume",
            "shop/approve",
            execution_id,
            "true",
            "--detailed",
            "--format",
            "json",
        )
    )
    assert resumed["state"] == "COMPLETED" and resumed["output"] == {"approved": True}
    again = failed(flux(server, "workflow", "resume", "shop/approve", execution_id, "true"))
    assert again.endswith("(409)")

    # async answers at once with a status URL
    accepted = json_out(
        flux(server, "workflow", "run", "shop/checkout", "1", "--mode", "async", "--format", "json")
    )
    assert accepted["state"] == "CREATED" and "status_url" in accepted

    # stream prints events and ends with the final state
    streamed = ok(flux(server, "workflow", "run", "shop/checkout", "2", "--mode", "stream"))
    assert "[state] COMPLETED" in streamed and "State: COMPLETED" in streamed

    # a failed workflow: the detailed shape on stdout, one line on stderr, exit 1
    result = flux(server, "workflow", "run", "shop/explode", "--format", "json")
    line = failed(result)
    assert "ValueError" in line and "boom" in line
    assert json.loads(result.stdout)["state"] == "FAILED"

    missing = failed(flux(server, "workflow", "status", "shop/approve", "no-such-id"))
    assert missing.endswith("(404)")
    failed(flux(server, "workflow", "delete", "shop/internal"), code=2)
    assert "Deleted" in ok(flux(server, "workflow", "delete", "shop/internal", "--yes"))
    assert failed(flux(server, "workflow", "show", "shop/internal")).endswith("(404)")


def test_execution_cancel_end_to_end(shop: FluxProcess) -> None:
    server = shop
    paused = json_out(flux(server, "workflow", "run", "shop/approve", "--format", "json"))
    execution_id = paused["execution_id"]
    args = ("execution", "cancel", "shop/approve", execution_id)
    cancelled = json_out(flux(server, *args, "--format", "json"))
    assert cancelled["state"] == "CANCELLED" and cancelled["execution_id"] == execution_id
    assert "State: CANCELLED" in ok(flux(server, *args))  # again: the same answer
    done = json_out(
        flux(server, "workflow", "run", "shop/checkout", "1", "--detailed", "--format", "json")
    )
    refused = failed(flux(server, "execution", "cancel", "shop/checkout", done["execution_id"]))
    assert refused.endswith("(409)")


def test_invalid_input_is_a_one_line_422(server: FluxProcess) -> None:
    (server.cwd / "typed.py").write_text(OWN_WORKFLOWS.replace('"billing"', '"typed"'))
    ok(flux(server, "workflow", "register", "typed.py"))
    line = failed(flux(server, "workflow", "run", "typed/invoice", '{"amount": "lots"}'))
    assert line.endswith("(422)")
