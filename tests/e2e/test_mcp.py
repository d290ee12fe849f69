"""MCP tools of a standalone service process, driven by the SDK's own client (`mcp.Client` over
streamable HTTP, modes auto and legacy).

First half: the real standalone application (gateway, endpoint cache, `/mcp` mount) on
127.0.0.1 in front of a small fake main server. Second half: real processes, `flux start
server` and `flux service start NAME --mcp`, with workflows registered through the HTTP API.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from adapters.config import Settings, StandaloneOptions
from adapters.standalone_process import build_standalone_app
from tests.e2e import processes

SERVICE = "billing"
MODES = ["auto", "legacy"]
INVOICE_SCHEMA = {
    "type": "object",
    "title": "InvoiceInput",
    "properties": {
        "customer_id": {"type": "string", "title": "Customer Id"},
        "amount": {"type": "number", "title": "Amount"},
    },
    "required": ["customer_id", "amount"],
}


@asynccontextmanager
async def mcp_client(
    url: str, mode: str = "auto", headers: dict[str, str] | None = None
) -> AsyncIterator[Client]:
    """The SDK's client over streamable HTTP; the HTTP client is ours to close."""
    http = httpx2.AsyncClient(headers=headers or {}, timeout=httpx2.Timeout(30.0))
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode) as mcp:
        yield mcp


async def tool_names(client: Client) -> set[str]:
    return {tool.name for tool in (await client.list_tools(cache_mode="refresh")).tools}


async def until(check: Callable[[], Awaitable[Any]], timeout: float, step: float = 0.2) -> Any:
    """Await `check` until it returns a truthy value; bounded in time."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(step)


# ---------------------------------------------------------------------------------------------
# The standalone application in front of a fake main server.


class FakeMain:
    """`GET /services/billing` and the service endpoint routes, from a mutable endpoint list."""

    def __init__(self) -> None:
        self.endpoints: dict[str, tuple[dict | None, str]] = {
            "invoice": (INVOICE_SCHEMA, "Bill a customer."),
            "approve": (None, "Ask a human."),
        }
        self.authorizations: list[str | None] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_get("/services/{service}", self.show)
        base = "/services/{service}/{workflow}"
        app.router.add_post(base, self.run)
        app.router.add_post(base + "/resume/{execution_id}", self.resume)
        app.router.add_post(base + "/resume/{execution_id}/{mode}", self.resume)
        app.router.add_get(base + "/status/{execution_id}", self.status)
        app.router.add_post(base + "/{mode}", self.run)
        return app

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def show(self, request: web.Request) -> web.Response:
        self.authorizations.append(request.headers.get("Authorization"))
        endpoints = [
            {
                "name": name,
                "ref": f"billing/{name}",
                "namespace": "billing",
                "version": 1,
                "input_schema": schema,
                "description": doc,
            }
            for name, (schema, doc) in sorted(self.endpoints.items())
        ]
        body = {"name": SERVICE, "mcp_enabled": True, "endpoints": endpoints, "collisions": []}
        return web.json_response(body)

    def detailed(self, workflow: str, execution_id: str, state: str, output: Any = None) -> dict:
        return {
            "execution_id": execution_id,
            "state": state,
            "output": output,
            "namespace": "billing",
            "workflow": workflow,
        }

    async def run(self, request: web.Request) -> web.Response:
        self.authorizations.append(request.headers.get("Authorization"))
        workflow, mode = request.match_info["workflow"], request.match_info.get("mode", "sync")
        detailed = request.query.get("detailed") == "true"
        body = await request.json()
        base = f"/services/{SERVICE}/{workflow}"
        if mode == "async":
            shape = self.detailed(workflow, "ex-async", "CREATED")
            return web.json_response({**shape, "status_url": f"{base}/status/ex-async"}, status=202)
        if workflow == "approve":
            shape = self.detailed(workflow, "ex-pause", "PAUSED", {"ask": body})
            return web.json_response({**shape, "resume_url": f"{base}/resume/ex-pause"}, status=202)
        shape = self.detailed(workflow, "ex-sync", "COMPLETED", {"got": body})
        return web.json_response(shape if detailed else shape["output"])

    async def resume(self, request: web.Request) -> web.Response:
        workflow = request.match_info["workflow"]
        body = await request.json()
        return web.json_response(
            self.detailed(
                workflow, request.match_info["execution_id"], "COMPLETED", {"resumed": body}
            )
        )

    async def status(self, request: web.Request) -> web.Response:
        workflow = request.match_info["workflow"]
        return web.json_response(
            self.detailed(workflow, request.match_info["execution_id"], "COMPLETED", "done")
        )


@pytest.fixture
async def fake_main() -> AsyncIterator[tuple[FakeMain, str]]:
    main = FakeMain()
    runner = web.AppRunner(main.app(), handle_signals=False)
    await runner.setup()
    port = processes.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield main, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def standalone_mcp(fake_main) -> AsyncIterator[str]:
    _, url = fake_main
    options = StandaloneOptions(
        settings=Settings(server_url=url),
        service=SERVICE,
        server_url=url,
        cache_ttl=0.2,
        upstream_timeout=10.0,
        mcp=True,
    )
    app = build_standalone_app(options, mcp=True)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/mcp"))
    finally:
        await server.close()


@pytest.mark.parametrize("mode", MODES)
async def test_standalone_serves_tools_that_reach_the_main_server(fake_main, standalone_mcp, mode):
    main, _ = fake_main
    async with (
        asyncio.timeout(30),
        mcp_client(standalone_mcp, mode, {"Authorization": "Bearer t"}) as mcp,
    ):
        tools = {tool.name: tool for tool in (await mcp.list_tools()).tools}
        assert set(tools) == {
            f"{prefix}{name}{suffix}"
            for name in ("invoice", "approve")
            for prefix, suffix in (
                ("", ""),
                ("", "_async"),
                ("resume_", ""),
                ("resume_", "_async"),
                ("status_", ""),
            )
        }
        assert set(tools["invoice"].input_schema["properties"]) == {"customer_id", "amount"}
        assert set(tools["approve"].input_schema["properties"]) == {"input"}

        done = await mcp.call_tool("invoice", {"customer_id": "C1", "amount": 2})
        assert done.structured_content["output"] == {"got": {"customer_id": "C1", "amount": 2}}

        started = await mcp.call_tool("invoice_async", {"customer_id": "C1", "amount": 2})
        assert started.structured_content["status_url"] == "/invoice/status/ex-async"
        status = await mcp.call_tool("status_invoice", {"execution_id": "ex-async"})
        assert status.structured_content["state"] == "COMPLETED"

        paused = await mcp.call_tool("approve", {"input": '{"doc": 7}'})
        assert paused.structured_content["state"] == "PAUSED"
        assert paused.structured_content["resume_url"] == "/approve/resume/ex-pause"
        resumed = await mcp.call_tool(
            "resume_approve", {"execution_id": "ex-pause", "input": '"yes"'}
        )
        assert resumed.structured_content["output"] == {"resumed": "yes"}
    assert "Bearer t" in main.authorizations and None not in main.authorizations[-3:]


async def test_standalone_tool_list_follows_the_main_server(fake_main, standalone_mcp):
    main, _ = fake_main
    async with asyncio.timeout(30), mcp_client(standalone_mcp) as mcp:
        assert "refund" not in await tool_names(mcp)
        main.endpoints["refund"] = (None, "")
        assert await until(lambda: _has(mcp, "refund"), 5)
        del main.endpoints["approve"]
        assert await until(lambda: _lacks(mcp, "approve"), 5)


async def _has(mcp: Client, name: str) -> bool:
    return name in await tool_names(mcp)


async def _lacks(mcp: Client, name: str) -> bool:
    return name not in await tool_names(mcp)


async def test_the_workflow_routes_still_work_next_to_mcp(fake_main, standalone_mcp):
    root = standalone_mcp.removesuffix("/mcp")
    async with httpx2.AsyncClient(timeout=10) as http:
        answer = await http.post(f"{root}/invoice", json={"customer_id": "C", "amount": 1})
        health = await http.get(f"{root}/health")
    assert answer.status_code == 200 and answer.json() == {"got": {"customer_id": "C", "amount": 1}}
    assert health.status_code == 200


# ---------------------------------------------------------------------------------------------
# Real processes.


BILLING = '''
from pydantic import BaseModel

from flux import ExecutionContext, task, workflow
from flux.tasks import pause


class InvoiceInput(BaseModel):
    customer_id: str
    amount: float


@task
async def price(amount: float) -> float:
    return amount * 2


@workflow.with_options(namespace="billing")
async def invoice(ctx: ExecutionContext[InvoiceInput]):
    """Bill a customer."""
    total = await price(ctx.input.amount)
    return {"customer": ctx.input.customer_id, "total": total}


@workflow.with_options(namespace="billing")
async def approve(ctx: ExecutionContext):
    """Wait for a human to approve."""
    answer = await pause("approval")
    return {"approved": answer, "asked": ctx.input}
'''

REFUND = """
from flux import ExecutionContext, workflow


@workflow.with_options(namespace="billing")
async def refund(ctx: ExecutionContext):
    return {"refunded": ctx.input}
"""


async def _http(method: str, url: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
    return await asyncio.to_thread(processes.http, method, url, body, **kwargs)


async def _register(server_url: str, source: str, filename: str) -> None:
    status, body = await asyncio.to_thread(processes.register_source, server_url, source, filename)
    assert status == 201, body


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("mcp-live")
    server = processes.start_server(cwd)
    standalone = None
    try:
        status, body = processes.register_source(server.url, BILLING, "billing.py")
        assert status == 201, body
        status, body = processes.http(
            "POST", f"{server.url}/services", {"name": SERVICE, "namespaces": ["billing"]}
        )
        assert status == 201, body
        standalone = processes.start_standalone(
            cwd, SERVICE, server.url, "--cache-ttl", "1", "--mcp"
        )
        yield server, standalone
    finally:
        if standalone is not None:
            standalone.stop()
        server.stop()


@pytest.mark.parametrize("mode", MODES)
async def test_live_list_and_call_every_kind_of_tool(live, mode):
    _, standalone = live
    async with asyncio.timeout(60), mcp_client(standalone.url + "/mcp", mode) as mcp:
        tools = {tool.name: tool for tool in (await mcp.list_tools()).tools}
        for name in ("invoice", "approve"):
            assert {
                name,
                f"{name}_async",
                f"resume_{name}",
                f"resume_{name}_async",
                f"status_{name}",
            } <= set(tools)
        invoice = tools["invoice"].input_schema
        assert invoice["properties"]["customer_id"]["type"] == "string"
        assert invoice["properties"]["amount"]["type"] == "number"
        assert set(invoice["required"]) == {"customer_id", "amount"}
        assert tools["invoice"].description.startswith("Bill a customer.")
        assert list(tools["approve"].input_schema["properties"]) == ["input"]

        done = await mcp.call_tool("invoice", {"customer_id": "C1", "amount": 2})
        assert not done.is_error, done.content
        assert done.structured_content["state"] == "COMPLETED"
        assert done.structured_content["output"] == {"customer": "C1", "total": 4.0}

        bad = await mcp.call_tool("invoice", {"customer_id": "C1", "amount": "two"})
        assert bad.is_error and bad.structured_content["errors"][0]["loc"] == ["amount"]

        started = await mcp.call_tool("invoice_async", {"customer_id": "C2", "amount": 1})
        execution_id = started.structured_content["execution_id"]
        assert started.structured_content["status_url"] == f"/invoice/status/{execution_id}"

        async def finished() -> dict | None:
            result = await mcp.call_tool("status_invoice", {"execution_id": execution_id})
            state = result.structured_content
            return state if state.get("state") == "COMPLETED" else None

        final = await until(finished, 20)
        assert final and final["output"] == {"customer": "C2", "total": 2.0}

        paused = await mcp.call_tool("approve", {"input": json.dumps({"doc": 7})})
        assert paused.structured_content["state"] == "PAUSED"
        paused_id = paused.structured_content["execution_id"]
        assert paused.structured_content["resume_url"] == f"/approve/resume/{paused_id}"
        assert "resume_approve" in " ".join(item.text for item in paused.content)
        resumed = await mcp.call_tool(
            "resume_approve", {"execution_id": paused_id, "input": json.dumps(True)}
        )
        assert not resumed.is_error, resumed.content
        assert resumed.structured_content["output"] == {"approved": True, "asked": {"doc": 7}}
        again = await mcp.call_tool("resume_approve", {"execution_id": paused_id})
        assert again.is_error  # no longer paused: 409 from the main server


async def test_live_tools_follow_registration_and_exclusion(live):
    server, standalone = live
    async with asyncio.timeout(60), mcp_client(standalone.url + "/mcp") as mcp:
        await _register(server.url, REFUND, "refund.py")
        assert await until(lambda: _has(mcp, "refund"), 10)
        refunded = await mcp.call_tool("refund", {"input": "[1, 2]"})
        assert refunded.structured_content["output"] == {"refunded": [1, 2]}

        status, body = await _http(
            "PUT", f"{server.url}/services/{SERVICE}", {"add_exclusions": ["billing/refund"]}
        )
        assert status == 200, body
        assert await until(lambda: _lacks(mcp, "refund"), 10)
        assert {"invoice", "approve"} <= await tool_names(mcp)


async def test_live_main_server_describes_the_tools(live):
    server, _ = live
    status, body = await _http("GET", f"{server.url}/services/{SERVICE}/mcp")
    assert status == 404  # MCP is off in the stored service; --mcp turned it on for the process
    status, body = await _http("PUT", f"{server.url}/services/{SERVICE}", {"mcp_enabled": True})
    assert status == 200, body
    status, body = await _http("GET", f"{server.url}/services/{SERVICE}/mcp")
    assert status == 200 and body["service"] == SERVICE
    names = {tool["name"] for tool in body["tools"]}
    assert {"invoice", "status_invoice", "resume_approve_async"} <= names
