"""Authentication end to end, with real processes: `flux start server` with auth on (API keys
made by `flux auth key`, OIDC tokens from a stand-in identity provider), the standalone service
process in front of it, and the MCP OAuth flow driven by the SDK's own client.

The identity provider is aiohttp on 127.0.0.1 in a thread of its own (the tests block on
subprocesses and urllib): discovery document, JWKS, and a client-credentials token endpoint
that signs RS256 tokens with a key made here.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from aiohttp import web
from joserfc.jwk import RSAKey
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.auth.conftest import IdentityProvider
from tests.e2e import processes

SERVICE = "billing"
API_AUDIENCE = "flux-api"
INVOICE_RUN = "workflow:billing:invoice:run"

BILLING = '''
from flux import ExecutionContext, workflow


@workflow.with_options(namespace="billing")
async def invoice(ctx: ExecutionContext):
    """Bill a customer."""
    return {"billed": ctx.input}


@workflow.with_options(namespace="billing")
async def audit(ctx: ExecutionContext):
    return "audited"
'''

REFUND = """
from flux import ExecutionContext, workflow


@workflow.with_options(namespace="billing")
async def refund(ctx: ExecutionContext):
    return {"refunded": ctx.input}
"""


# -- the identity provider ------------------------------------------------------------------


class TokenIssuer(IdentityProvider):
    """The test IdP plus a client-credentials token endpoint: a known client gets a token whose
    audience is the `resource` it asks for (RFC 8707) and whose permissions are its grants."""

    def __init__(self, signing: RSAKey) -> None:
        super().__init__(signing)
        # client id -> (secret, permissions, extra audiences)
        self.clients: dict[str, tuple[str, list[str], list[str]]] = {}

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_post("/token", self._token)
        return app

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        client = self.clients.get(str(form.get("client_id")))
        if form.get("grant_type") != "client_credentials" or client is None:
            return web.json_response({"error": "invalid_client"}, status=401)
        secret, permissions, audiences = client
        if form.get("client_secret") != secret:
            return web.json_response({"error": "invalid_client"}, status=401)
        resource = form.get("resource")
        audience = [str(resource)] if resource else []
        token = self.token(
            sub=f"client:{form['client_id']}",
            aud=[*audience, *audiences] or API_AUDIENCE,
            permissions=permissions,
        )
        body = {"access_token": token, "token_type": "Bearer", "expires_in": 300}
        return web.json_response(body)


class ThreadedIdp:
    """Runs a `TokenIssuer` on its own event loop in a daemon thread."""

    def __init__(self, key: RSAKey) -> None:
        self.provider = TokenIssuer(key)
        self.port = processes.free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None

    def start(self) -> TokenIssuer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        self.provider.issuer = f"http://127.0.0.1:{self.port}"
        return self.provider

    async def _start(self) -> None:
        self.runner = web.AppRunner(self.provider.app(), access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def stop(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def idp() -> Iterator[TokenIssuer]:
    key = RSAKey.generate_key(2048, parameters={"kid": "e2e-1", "alg": "RS256", "use": "sig"})
    threaded = ThreadedIdp(key)
    provider = threaded.start()
    try:
        yield provider
    finally:
        threaded.stop()


# -- helpers --------------------------------------------------------------------------------


def flux(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        processes.flux_command(*args),
        cwd=cwd,
        env=processes.child_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def create_key(cwd: Path, name: str, *permissions: str) -> str:
    """`flux auth key create`: the secret is the only thing on stdout."""
    args = ["auth", "key", "create", name]
    for permission in permissions:
        args += ["--permission", permission]
    done = flux(cwd, *args)
    assert done.returncode == 0, done.stderr
    secret = done.stdout.strip()
    assert re.fullmatch(r"flux_[A-Za-z0-9_-]{40,}", secret), done.stdout
    return secret


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def http(method: str, url: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
    return processes.http(method, url, body, **kw)


def challenge(url: str, **kw: Any) -> str:
    """The `WWW-Authenticate` of a 401 (urllib keeps headers only on the exception)."""
    response = httpx2.post(url, json={}, timeout=10, **kw)
    assert response.status_code == 401, response.text
    return response.headers.get("www-authenticate", "")


def until(predicate: Any, timeout: float) -> Any:
    return processes.until(predicate, timeout, step=0.1)


# -- a main server with auth on ---------------------------------------------------------------


class Secured:
    def __init__(self, cwd: Path, server: processes.FluxProcess, keys: dict[str, str]) -> None:
        self.cwd, self.server, self.keys = cwd, server, keys
        self.url = server.url


@pytest.fixture(scope="module")
def secured(tmp_path_factory, idp) -> Iterator[Secured]:
    cwd = tmp_path_factory.mktemp("auth-server")
    (cwd / "flux.toml").write_text(
        "[flux.security.auth]\nenabled = true\n\n"
        "[flux.security.auth.oidc]\n"
        f'enabled = true\nissuer = "{idp.issuer}"\naudience = "{API_AUDIENCE}"\n'
    )
    # Made before the server ever runs: the CLI writes to the database directly.
    keys = {
        "admin": create_key(cwd, "admin", "admin"),
        "billing": create_key(cwd, "billing", "workflow:billing:*"),
        "audit": create_key(cwd, "audit-only", "workflow:billing:audit:run"),
        "reader": create_key(cwd, "reader"),
    }
    server = processes.start_server(cwd)
    try:
        admin = bearer(keys["admin"])
        status, body = processes.http(
            "POST",
            f"{server.url}/workflows?filename=billing.py",
            raw=BILLING.encode(),
            headers={"Content-Type": "text/x-python", **admin},
        )
        assert status == 201, body
        status, body = http(
            "POST",
            f"{server.url}/services",
            {"name": SERVICE, "namespaces": ["billing"]},
            headers=admin,
        )
        assert status == 201, body
        yield Secured(cwd, server, keys)
    finally:
        server.stop()


def test_no_credentials_get_401_before_any_lookup(secured):
    url = secured.url
    assert challenge(f"{url}/services/billing/invoice").startswith("Bearer")
    # An unknown service or endpoint does not reveal itself to an anonymous caller.
    assert http("POST", f"{url}/services/nosuch/invoice", {})[0] == 401
    assert http("POST", f"{url}/services/billing/nosuch", {})[0] == 401
    assert http("GET", f"{url}/services/nosuch")[0] == 401
    status, body = http("POST", f"{url}/services/billing/invoice", {})
    assert status == 401 and body["error"] == "unauthenticated"
    # The same lookups with credentials: now a 404 may be told.
    headers = bearer(secured.keys["billing"])
    assert http("POST", f"{url}/services/nosuch/invoice", {}, headers=headers)[0] == 404
    assert http("GET", f"{url}/health")[0] == 200  # health stays open for probes


def test_bad_credentials_get_401(secured):
    url = f"{secured.url}/services/billing/invoice"
    for header in (
        "Bearer flux_not-a-key-we-ever-made",
        "Bearer not.a.jwt",
        "Basic YWRtaW46YWRtaW4=",
        "Bearer ",
    ):
        status, body = http("POST", url, {}, headers={"Authorization": header})
        assert status == 401, (header, body)
    assert 'error="invalid_token"' in challenge(url, headers=bearer("flux_unknown"))


def test_missing_run_permission_is_403_naming_it(secured):
    status, body = http(
        "POST",
        f"{secured.url}/services/billing/invoice",
        {"n": 1},
        headers=bearer(secured.keys["audit"]),
    )
    assert status == 403
    assert body["error"] == "forbidden" and body["permission"] == INVOICE_RUN
    assert INVOICE_RUN in body["message"]
    # The same key runs the one workflow it was granted.
    status, body = http(
        "POST", f"{secured.url}/services/billing/audit", {}, headers=bearer(secured.keys["audit"])
    )
    assert (status, body) == (200, "audited")


def test_namespace_wildcard_runs_and_reaches_its_executions(secured):
    headers = bearer(secured.keys["billing"])
    url = f"{secured.url}/services/billing/invoice"
    status, body = http("POST", url + "?detailed=true", {"n": 1}, headers=headers)
    assert status == 200, body
    assert body["state"] == "COMPLETED" and body["output"] == {"billed": {"n": 1}}
    status_url = f"{url}/status/{body['execution_id']}"
    assert http("GET", status_url, headers=headers)[0] == 200
    assert http("GET", status_url, headers=bearer(secured.keys["audit"]))[0] == 403
    assert http("GET", status_url)[0] == 401


def test_management_needs_admin(secured):
    runner = bearer(secured.keys["billing"])
    status, body = http("POST", f"{secured.url}/services", {"name": "ops1"}, headers=runner)
    assert status == 403 and body["permission"] == "admin"
    status, body = processes.http(
        "POST",
        f"{secured.url}/workflows?filename=refund.py",
        raw=REFUND.encode(),
        headers={"Content-Type": "text/x-python", **runner},
    )
    assert status == 403 and body["permission"] == "admin"
    admin = bearer(secured.keys["admin"])
    status, body = http("POST", f"{secured.url}/services", {"name": "ops1"}, headers=admin)
    assert status == 201, body
    assert http("DELETE", f"{secured.url}/services/ops1", headers=runner)[0] == 403
    assert http("DELETE", f"{secured.url}/services/ops1", headers=admin)[0] == 200
    # Reads need credentials, not a permission.
    reader = bearer(secured.keys["reader"])
    assert http("GET", f"{secured.url}/services/billing", headers=reader)[0] == 200
    # `admin` alone does not run workflows.
    status, body = http("POST", f"{secured.url}/services/billing/invoice", {}, headers=admin)
    assert status == 403 and body["permission"] == INVOICE_RUN


def test_revoked_key_is_refused_from_the_next_request(secured):
    secret = create_key(secured.cwd, "temp", "workflow:billing:*")
    url = f"{secured.url}/services/billing/audit"
    assert http("POST", url, {}, headers=bearer(secret))[0] == 200
    done = flux(secured.cwd, "auth", "key", "revoke", "temp")
    assert done.returncode == 0, done.stderr
    status, body = http("POST", url, {}, headers=bearer(secret))
    assert status == 401 and "revoked" in body["message"]
    listed = flux(secured.cwd, "auth", "key", "list", "--format", "json")
    keys = {k["name"]: k for k in json.loads(listed.stdout)["keys"]}
    assert keys["temp"]["revoked"] is True and keys["billing"]["revoked"] is False
    assert secret not in listed.stdout and "secret" not in keys["temp"]


def test_cli_client_commands_send_the_api_key(secured):
    base = ("service", "list", "--server-url", secured.url)
    refused = flux(secured.cwd, *base)
    assert refused.returncode != 0 and "error:" in refused.stderr
    by_flag = flux(secured.cwd, *base, "--api-key", secured.keys["admin"], "--format", "json")
    assert by_flag.returncode == 0, by_flag.stderr
    by_env = flux(secured.cwd, *base, env={"FLUX_API_KEY": secured.keys["admin"]})
    assert by_env.returncode == 0 and SERVICE in by_env.stdout


def test_oidc_token_with_permissions_runs(secured, idp):
    url = f"{secured.url}/services/billing/invoice"
    token = idp.token(permissions=["workflow:billing:invoice:run"])
    status, body = http("POST", url, {"via": "jwt"}, headers=bearer(token))
    assert (status, body) == (200, {"billed": {"via": "jwt"}})
    status, body = http("POST", url, {}, headers=bearer(idp.token(permissions=[])))
    assert status == 403 and body["permission"] == INVOICE_RUN


def test_oidc_token_refused_for_wrong_audience_issuer_or_expiry(secured, idp):
    url = f"{secured.url}/services/billing/invoice"
    cases = {
        "audience": idp.token(aud="someone-else"),
        "issuer": idp.token(iss="https://evil.example.com"),
        "expired": idp.token(exp=int(time.time()) - 3600),
        "unsigned": idp.unsigned(),
        "hs256": idp.forged_hs256(),
    }
    for case, token in cases.items():
        status, body = http("POST", url, {}, headers=bearer(token))
        assert status == 401, (case, body)
    status, body = http("POST", url, {}, headers=bearer(cases["audience"]))
    assert "audience" in body["message"]


# -- the standalone process in front of it ---------------------------------------------------


def start_standalone(
    secured: Secured, *extra: str, env: dict[str, str] | None = None, port: int | None = None
) -> processes.FluxProcess:
    port = port or processes.free_port()
    args = ["service", "start", SERVICE, "--host", "127.0.0.1", "--port", str(port)]
    args += ["--server-url", secured.url, *extra]
    return processes.FluxProcess(args, secured.cwd, port, env).start()


@pytest.fixture(scope="module")
def standalone(secured) -> Iterator[processes.FluxProcess]:
    # Its own key can only read the service: enough to discover the endpoints, not to run them.
    process = start_standalone(
        secured, "--cache-ttl", "0.5", "--no-mcp", env={"FLUX_API_KEY": secured.keys["reader"]}
    )
    try:
        yield process
    finally:
        process.stop()


def test_standalone_forwards_the_callers_authorization(standalone, secured):
    url = f"{standalone.url}/invoice"
    status, body = http("POST", url, {})
    assert status == 401, body
    assert challenge(url).startswith("Bearer")
    status, body = http("POST", url, {"n": 2}, headers=bearer(secured.keys["billing"]))
    assert (status, body) == (200, {"billed": {"n": 2}})
    status, body = http("POST", url, {}, headers=bearer(secured.keys["audit"]))
    assert status == 403 and body["permission"] == INVOICE_RUN
    status, body = http("POST", url, {}, headers=bearer("flux_bogus"))
    assert status == 401


def test_standalone_cache_refresh_works_with_auth_on(standalone, secured):
    # Its own key keeps /health informed without any caller's credentials.
    status, body = http("GET", f"{standalone.url}/health")
    assert status == 200 and body["endpoints"] == 2, body
    status, body = processes.http(
        "POST",
        f"{secured.url}/workflows?filename=refund.py",
        raw=REFUND.encode(),
        headers={"Content-Type": "text/x-python", **bearer(secured.keys["admin"])},
    )
    assert status == 201, body
    caller = bearer(secured.keys["billing"])

    def refunded() -> Any:
        found = http("POST", f"{standalone.url}/refund", [3], headers=caller)
        return found if found[0] == 200 else None

    assert until(refunded, 10) == (200, {"refunded": [3]})
    assert http("POST", f"{standalone.url}/refund", [3])[0] == 401


def test_standalone_without_its_own_key_refreshes_with_the_callers(secured):
    process = start_standalone(secured, "--cache-ttl", "0.5", "--no-mcp")
    try:
        status, body = http("GET", f"{process.url}/health")
        assert body["endpoints"] == 0  # it could not look without credentials
        assert http("POST", f"{process.url}/audit", {})[0] == 401
        status, body = http(
            "POST", f"{process.url}/audit", {}, headers=bearer(secured.keys["audit"])
        )
        assert (status, body) == (200, "audited")
    finally:
        process.stop()


# -- MCP OAuth on the standalone process ------------------------------------------------------


@asynccontextmanager
async def mcp_client(url: str, token: str, mode: str = "auto"):
    http_client = httpx2.AsyncClient(headers=bearer(token), timeout=httpx2.Timeout(30.0))
    async with (
        http_client,
        Client(streamable_http_client(url, http_client=http_client), mode=mode) as client,
    ):
        yield client


def client_credentials(idp: TokenIssuer, client: str, secret: str, resource: str) -> str:
    """What an MCP client does after the 401: metadata, then the authorization server's token
    endpoint (found by OIDC discovery)."""
    discovery = httpx2.get(f"{idp.issuer}/.well-known/openid-configuration", timeout=10).json()
    answer = httpx2.post(
        discovery["token_endpoint"],
        data={
            "grant_type": "client_credentials",
            "client_id": client,
            "client_secret": secret,
            "resource": resource,
        },
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


@pytest.fixture(scope="module")
def mcp_standalone(secured, idp) -> Iterator[processes.FluxProcess]:
    port = processes.free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    # The MCP token's audience is this resource; upstream the process uses its own key.
    process = start_standalone(
        secured,
        "--mcp",
        "--mcp-issuer",
        idp.issuer,
        "--mcp-audience",
        resource,
        env={"FLUX_API_KEY": secured.keys["billing"]},
        port=port,
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_mcp_oauth_flow_with_the_sdk_client(mcp_standalone, idp, mode):
    idp.clients["agent"] = ("agent-secret", [], [])  # no Flux permissions of its own
    mcp_url = f"{mcp_standalone.url}/mcp"
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    async with httpx2.AsyncClient(timeout=10) as http_client:
        refused = await http_client.post(mcp_url, json=initialize)
        assert refused.status_code == 401
        header = refused.headers["www-authenticate"]
        assert header.startswith("Bearer ") and "error=" not in header
        metadata_url = re.search(r'resource_metadata="([^"]+)"', header).group(1)
        assert metadata_url == f"{mcp_standalone.url}/.well-known/oauth-protected-resource/mcp"
        metadata = (await http_client.get(metadata_url)).json()
    assert metadata["resource"] == mcp_url
    assert metadata["authorization_servers"] == [idp.issuer]
    assert metadata["bearer_methods_supported"] == ["header"]

    token = await asyncio.to_thread(
        client_credentials, idp, "agent", "agent-secret", metadata["resource"]
    )
    async with asyncio.timeout(60), mcp_client(mcp_url, token, mode) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"invoice", "invoice_async", "status_invoice", "audit"} <= names
        result = await client.call_tool("invoice", {"input": '{"n": 5}'})
    assert not result.is_error, result.content
    assert result.structured_content["state"] == "COMPLETED"
    assert result.structured_content["output"] == {"billed": {"n": 5}}


async def test_mcp_refuses_a_token_for_another_audience(mcp_standalone, idp):
    token = idp.token(aud=API_AUDIENCE)  # good for the main server, not for this resource
    async with httpx2.AsyncClient(timeout=10) as http_client:
        refused = await http_client.post(
            f"{mcp_standalone.url}/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers=bearer(token),
        )
    assert refused.status_code == 401
    header = refused.headers["www-authenticate"]
    assert 'error="invalid_token"' in header and "resource_metadata=" in header


async def test_mcp_forwards_tokens_only_when_told_to(secured, idp):
    """`--mcp-forward-token`: no key of its own; the caller's token goes to the main server,
    which applies its own audience and permission checks to it."""
    port = processes.free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    idp.clients["both"] = ("both-secret", ["workflow:billing:invoice:run"], [API_AUDIENCE])
    idp.clients["mcp-only"] = ("only-secret", ["workflow:billing:invoice:run"], [])
    process = await asyncio.to_thread(
        start_standalone,
        secured,
        "--mcp",
        "--mcp-issuer",
        idp.issuer,
        "--mcp-audience",
        resource,
        "--mcp-forward-token",
        port=port,
    )
    try:
        both = await asyncio.to_thread(client_credentials, idp, "both", "both-secret", resource)
        async with asyncio.timeout(60), mcp_client(resource, both) as client:
            result = await client.call_tool("invoice", {"input": "7"})
            assert result.structured_content["output"] == {"billed": 7}
            # Its permission covers invoice only.
            audit = await client.call_tool("audit", {"input": "null"})
            assert audit.is_error and audit.structured_content["permission"] == (
                "workflow:billing:audit:run"
            )
        # Accepted at /mcp, refused by the main server: the audience is not its own.
        only = await asyncio.to_thread(client_credentials, idp, "mcp-only", "only-secret", resource)
        async with asyncio.timeout(60), mcp_client(resource, only) as client:
            refused = await client.call_tool("invoice", {"input": "7"})
        assert refused.is_error and refused.structured_content["error"] == "unauthenticated"
    finally:
        await asyncio.to_thread(process.stop)
