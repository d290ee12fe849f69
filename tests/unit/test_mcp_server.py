"""The MCP front end served by aiohttp on 127.0.0.1, driven by the SDK's own client, with a fake
gateway standing in for the main server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.auth.provider import AccessToken
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel

from adapters.mcp.server import mount_mcp
from core.errors import UpstreamUnavailable
from core.model import Endpoint, WorkflowInfo, WorkflowRef


class InvoiceInput(BaseModel):
    customer_id: str
    amount: float
    note: str = ""


def endpoint(name: str, schema: dict | None, doc: str = "") -> Endpoint:
    return Endpoint(name, WorkflowInfo(WorkflowRef("billing", name), 2, schema, doc))


INVOICE = endpoint("invoice", InvoiceInput.model_json_schema(), "Bill a customer.")
APPROVAL = endpoint("approval", None, "Wait for a human.")
BROKEN = endpoint("broken", None)


class FakeGateway:
    """Answers like `HttpServiceGateway.call`: (status, detailed body), errors as bodies."""

    service_name = "billing"

    def __init__(self) -> None:
        self.current: list[Endpoint] = [INVOICE, APPROVAL, BROKEN]
        self.calls: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []
        self.down = False

    async def endpoints(self, authorization: str | None = None) -> tuple[Endpoint, ...]:
        self.authorizations.append(authorization)
        if self.down:
            raise UpstreamUnavailable("the Flux server at http://127.0.0.1:1 does not answer")
        return tuple(self.current)

    async def call(self, workflow, action, *, body=None, execution_id=None, authorization=None):
        self.calls.append(
            {"workflow": workflow, "action": action, "body": body, "execution_id": execution_id}
        )
        self.authorizations.append(authorization)
        detailed = {
            "execution_id": execution_id or "e-1",
            "namespace": "billing",
            "workflow": workflow,
        }
        if execution_id == "missing":
            return 404, {"error": "execution_not_found", "message": "no execution 'missing'"}
        if action == "status":
            return 200, {**detailed, "state": "COMPLETED", "output": {"done": True}}
        if action in ("async", "resume_async"):
            return 202, {
                **detailed,
                "state": "CREATED" if action == "async" else "RUNNING",
                "output": None,
                "status_url": f"/{workflow}/status/{detailed['execution_id']}",
            }
        if workflow == "broken":
            return 500, {
                **detailed,
                "state": "FAILED",
                "output": None,
                "error": {"type": "ValueError", "message": "boom"},
            }
        if workflow == "approval" and action == "run":
            return 202, {
                **detailed,
                "state": "PAUSED",
                "output": {"question": "ok?"},
                "resume_url": f"/approval/resume/{detailed['execution_id']}",
            }
        return 200, {**detailed, "state": "COMPLETED", "output": {"echo": body}}


async def start(app: web.Application) -> AsyncIterator[TestServer]:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


TRANSPORTS = [
    pytest.param({"stateless": True, "json_response": False}, id="stateless-sse"),
    pytest.param({"stateless": True, "json_response": True}, id="stateless-json"),
    pytest.param({"stateless": False, "json_response": False}, id="stateful-sse"),
    pytest.param({"stateless": False, "json_response": True}, id="stateful-json"),
]


@pytest.fixture(params=TRANSPORTS)
async def mcp_url(request, gateway) -> AsyncIterator[str]:
    app = web.Application()
    mount_mcp(app, gateway, **request.param)
    async for server in start(app):
        yield str(server.make_url("/mcp"))


@asynccontextmanager
async def client(
    url: str, mode: str = "auto", headers: dict[str, str] | None = None
) -> AsyncIterator[Client]:
    """The SDK's client over streamable HTTP; the HTTP client is ours to close."""
    http = httpx2.AsyncClient(headers=headers or {}, timeout=httpx2.Timeout(10.0))
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode) as mcp:
        yield mcp


MODES = ["auto", "legacy"]


@pytest.mark.parametrize("mode", MODES)
async def test_lists_five_tools_per_endpoint_with_typed_and_untyped_schemas(mcp_url, mode):
    async with asyncio.timeout(20), client(mcp_url, mode) as mcp:
        tools = {tool.name: tool for tool in (await mcp.list_tools()).tools}
    for name in ("invoice", "approval", "broken"):
        assert {
            name,
            f"{name}_async",
            f"resume_{name}",
            f"resume_{name}_async",
            f"status_{name}",
        } <= set(tools)
    assert len(tools) == 15
    invoice = tools["invoice"].input_schema
    assert invoice["properties"]["customer_id"]["type"] == "string"
    assert invoice["properties"]["amount"]["type"] == "number"
    assert set(invoice["required"]) == {"customer_id", "amount"}
    assert tools["invoice"].description.startswith("Bill a customer.")
    assert list(tools["approval"].input_schema["properties"]) == ["input"]
    assert tools["approval"].input_schema["properties"]["input"]["type"] == "string"
    assert tools["status_invoice"].input_schema["required"] == ["execution_id"]


@pytest.mark.parametrize("mode", MODES)
async def test_calls_map_to_gateway_calls_with_detailed_results(mcp_url, gateway, mode):
    async with asyncio.timeout(20), client(mcp_url, mode) as mcp:
        done = await mcp.call_tool("invoice", {"customer_id": "C-1", "amount": 9.5})
        paused = await mcp.call_tool("approval", {"input": '{"who": "ann"}'})
        resumed = await mcp.call_tool("resume_approval", {"execution_id": "e-1", "input": "true"})
        started = await mcp.call_tool("invoice_async", {"customer_id": "C-2", "amount": 1})
        status = await mcp.call_tool("status_invoice", {"execution_id": "e-1"})
    assert not done.is_error
    assert done.structured_content["state"] == "COMPLETED"
    assert done.structured_content["output"] == {"echo": {"customer_id": "C-1", "amount": 9.5}}
    assert '"COMPLETED"' in done.content[0].text

    assert not paused.is_error and paused.structured_content["state"] == "PAUSED"
    assert paused.structured_content["resume_url"] == "/approval/resume/e-1"
    hint = " ".join(item.text for item in paused.content)
    assert "resume_approval" in hint and "e-1" in hint

    assert resumed.structured_content["output"] == {"echo": True}
    assert started.structured_content["status_url"] == "/invoice/status/e-1"
    assert "status_invoice" in " ".join(item.text for item in started.content)
    assert status.structured_content["output"] == {"done": True}
    assert gateway.calls == [
        {
            "workflow": "invoice",
            "action": "run",
            "body": {"customer_id": "C-1", "amount": 9.5},
            "execution_id": None,
        },
        {"workflow": "approval", "action": "run", "body": {"who": "ann"}, "execution_id": None},
        {"workflow": "approval", "action": "resume", "body": True, "execution_id": "e-1"},
        {
            "workflow": "invoice",
            "action": "async",
            "body": {"customer_id": "C-2", "amount": 1},
            "execution_id": None,
        },
        {"workflow": "invoice", "action": "status", "body": None, "execution_id": "e-1"},
    ]


async def test_failures_and_bad_arguments_are_error_results(mcp_url, gateway):
    async with asyncio.timeout(20), client(mcp_url) as mcp:
        failed = await mcp.call_tool("broken", {})
        bad_type = await mcp.call_tool("invoice", {"customer_id": "C-1", "amount": "lots"})
        missing = await mcp.call_tool("invoice", {"amount": 3})
        bad_json = await mcp.call_tool("approval", {"input": "{nope"})
        not_found = await mcp.call_tool("status_approval", {"execution_id": "missing"})
        with pytest.raises(MCPError) as unknown:
            await mcp.call_tool("no_such_tool", {})
    assert failed.is_error and failed.structured_content["error"]["message"] == "boom"
    assert bad_type.is_error and "amount" in bad_type.content[0].text
    assert bad_type.structured_content["errors"][0]["loc"] == ["amount"]
    assert missing.is_error and missing.structured_content["errors"][0]["loc"] == ["customer_id"]
    assert bad_json.is_error and "input" in bad_json.structured_content["message"]
    assert not_found.is_error
    assert not_found.structured_content["error"] == "execution_not_found"
    assert unknown.value.error.code == -32602
    # Rejected arguments never reach the main server.
    assert [c["workflow"] for c in gateway.calls] == ["broken", "approval"]


async def test_tool_list_follows_the_endpoints(mcp_url, gateway):
    async with asyncio.timeout(20), client(mcp_url) as mcp:
        before = {tool.name for tool in (await mcp.list_tools()).tools}
        gateway.current = [INVOICE, endpoint("refund", None)]
        after = {tool.name for tool in (await mcp.list_tools(cache_mode="refresh")).tools}
    assert "approval" in before and "refund" not in before
    assert "refund" in after and "resume_refund_async" in after
    assert not any("approval" in name for name in after)


async def test_a_removed_workflow_tool_is_unknown(mcp_url, gateway):
    async with asyncio.timeout(20), client(mcp_url) as mcp:
        await mcp.list_tools()
        gateway.current = [INVOICE]
        with pytest.raises(MCPError):
            await mcp.call_tool("approval", {"input": "1"})
    assert not any(call["workflow"] == "approval" for call in gateway.calls)


async def test_clashing_tool_names_are_left_out(mcp_url, gateway):
    gateway.current = [endpoint("x", None), endpoint("x_async", None), INVOICE]
    async with asyncio.timeout(20), client(mcp_url) as mcp:
        names = {tool.name for tool in (await mcp.list_tools()).tools}
    assert "x_async" not in names and "resume_x_async" not in names
    assert {"x", "resume_x", "status_x", "x_async_async", "status_x_async", "invoice"} <= names


async def test_main_server_down_is_reported_not_crashed(mcp_url, gateway):
    async with asyncio.timeout(20), client(mcp_url) as mcp:
        await mcp.list_tools()
        gateway.down = True
        result = await mcp.call_tool("invoice", {"customer_id": "C", "amount": 1})
        with pytest.raises(MCPError, match="does not answer"):
            await mcp.list_tools(cache_mode="refresh")
    assert result.is_error and result.structured_content["error"] == "upstream_unavailable"


@pytest.mark.parametrize("mode", MODES)
async def test_authorization_header_is_passed_through(gateway, mode):
    seen: list[str | None] = []

    async def auth(request: web.Request) -> Any:
        header = request.headers.get("Authorization")
        seen.append(header)
        if header != "Bearer good":
            return web.json_response(
                {"error": "unauthenticated", "message": "no"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer resource_metadata="http://x/meta"'},
            )
        return AccessToken(token="good", client_id="agent", scopes=["run"])

    app = web.Application()
    mount_mcp(app, gateway, auth=auth, stateless=False)
    async for server in start(app):
        url = str(server.make_url("/mcp"))
        async with asyncio.timeout(20), client(url, mode, {"Authorization": "Bearer good"}) as mcp:
            await mcp.list_tools()
            await mcp.call_tool("invoice", {"customer_id": "C", "amount": 1})
        http = httpx2.AsyncClient(timeout=5)
        async with http:
            refused = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert refused.status_code == 401
    assert "resource_metadata" in refused.headers["www-authenticate"]
    assert seen and all(header == "Bearer good" for header in seen[:-1])
    assert set(gateway.authorizations) == {"Bearer good"}


async def test_the_session_manager_stops_with_the_app():
    app = web.Application()
    mount_mcp(app, FakeGateway())
    async for server in start(app):
        async with asyncio.timeout(20), client(str(server.make_url("/mcp"))) as mcp:
            assert len((await mcp.list_tools()).tools) == 15
    # After cleanup the manager's task is gone: nothing of ours is left running.
    leftovers = [t for t in asyncio.all_tasks() if t.get_name() == "mcp-session-manager"]
    assert leftovers == []
