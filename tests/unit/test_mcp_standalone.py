"""`adapters.mcp.standalone.mount_mcp`: open without an issuer; with one, bearer tokens checked
against a small identity provider on 127.0.0.1 and passed on to the gateway."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from joserfc import jwt
from joserfc.jwk import RSAKey
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from adapters.config import Settings, StandaloneOptions
from adapters.mcp.standalone import mount_mcp
from core.model import Endpoint, WorkflowInfo, WorkflowRef

AUDIENCE = "flux-mcp"


class Gateway:
    service_name = "billing"

    def __init__(self) -> None:
        self.authorizations: list[str | None] = []

    async def endpoints(self, authorization=None):
        self.authorizations.append(authorization)
        return (Endpoint("echo", WorkflowInfo(WorkflowRef("billing", "echo"), 1, None, "")),)

    async def call(self, workflow, action, *, body=None, execution_id=None, authorization=None):
        self.authorizations.append(authorization)
        return 200, {"execution_id": "e", "state": "COMPLETED", "output": body}


async def serve(app: web.Application) -> AsyncIterator[TestServer]:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture(scope="module")
def key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256", "use": "sig"})


@pytest.fixture
async def issuer(key) -> AsyncIterator[str]:
    async def jwks(_: web.Request) -> web.Response:
        return web.json_response({"keys": [key.as_dict(private=False)]})

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", jwks)
    async for server in serve(app):
        yield str(server.make_url("")).rstrip("/")


def token(key: RSAKey, issuer: str, **claims) -> str:
    now = int(time.time())
    body = {"iss": issuer, "sub": "agent", "aud": AUDIENCE, "iat": now, "exp": now + 300}
    return jwt.encode({"alg": "RS256", "kid": key.kid}, {**body, **claims}, key)


def options(**extra) -> StandaloneOptions:
    return StandaloneOptions(settings=Settings(), service="billing", mcp=True, **extra)


@asynccontextmanager
async def client(url: str, mode: str, headers: dict[str, str]) -> AsyncIterator[Client]:
    """The SDK's client over streamable HTTP; the HTTP client is ours to close."""
    http = httpx2.AsyncClient(headers=headers or {}, timeout=httpx2.Timeout(10.0))
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode) as mcp:
        yield mcp


async def test_without_an_issuer_mcp_is_open():
    gateway = Gateway()
    app = web.Application()
    mount_mcp(app, gateway, options())
    async for server in serve(app):
        async with asyncio.timeout(20), client(str(server.make_url("/mcp")), "auto", {}) as mcp:
            result = await mcp.call_tool("echo", {"input": "[1]"})
        async with httpx2.AsyncClient(timeout=5) as http:
            metadata = await http.get(str(server.make_url("/.well-known/oauth-protected-resource")))
    assert result.structured_content["output"] == [1]
    assert metadata.status_code == 404


@pytest.mark.parametrize("forward", [False, True], ids=["own-credentials", "forward-token"])
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_with_an_issuer_tokens_are_required(issuer, key, mode, forward):
    """The MCP token is checked here; it reaches the main server only with forwarding on."""
    gateway = Gateway()
    app = web.Application()
    mount_mcp(
        app,
        gateway,
        options(mcp_issuer=issuer, mcp_audience=AUDIENCE, mcp_forward_token=forward),
    )
    async for server in serve(app):
        url = str(server.make_url("/mcp"))
        async with httpx2.AsyncClient(timeout=5) as http:
            refused = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
            forged = await http.post(
                url,
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                headers={"Authorization": "Bearer " + token(key, issuer, aud="someone-else")},
            )
            metadata = await http.get(
                str(server.make_url("/.well-known/oauth-protected-resource/mcp"))
            )
        good = "Bearer " + token(key, issuer)
        async with asyncio.timeout(20), client(url, mode, {"Authorization": good}) as mcp:
            names = {tool.name for tool in (await mcp.list_tools()).tools}
            result = await mcp.call_tool("echo", {"input": '{"a": 1}'})
    assert refused.status_code == 401 and forged.status_code == 401
    assert 'resource_metadata="' in refused.headers["www-authenticate"]
    assert metadata.status_code == 200
    assert metadata.json()["resource"] == url
    assert metadata.json()["authorization_servers"] == [issuer]
    assert "echo" in names and result.structured_content["output"] == {"a": 1}
    assert gateway.authorizations and set(gateway.authorizations) == ({good} if forward else {None})
