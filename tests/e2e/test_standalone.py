"""The standalone service process end to end.

First half: the process's application served on 127.0.0.1 in front of a fake main server that
counts what reaches it. Second half: real processes (`flux start server`, `flux service start`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.config import Settings, StandaloneOptions
from adapters.http.standalone import GATEWAY
from adapters.standalone_process import build_standalone_app
from tests.e2e import processes

SERVICE = "billing"


def _endpoint(name: str, namespace: str = "billing") -> dict[str, Any]:
    return {
        "name": name,
        "ref": f"{namespace}/{name}",
        "namespace": namespace,
        "version": 1,
        "input_schema": None,
        "description": "",
    }


def _detailed(execution_id: str, workflow: str, state: str, output: Any = None) -> dict:
    return {
        "execution_id": execution_id,
        "state": state,
        "output": output,
        "namespace": "billing",
        "workflow": workflow,
    }


class FakeServer:
    """A stand-in for the main server: a few endpoints with fixed behaviour, every request
    counted and the last headers of each path kept."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.names = ["invoice", "approve", "boom", "slow", "echo", "ticker", "health"]
        self.collisions = [
            {
                "name": "process",
                "refs": ["analytics/process", "billing/process"],
                "namespaces": ["analytics", "billing"],
            }
        ]
        self.counts: Counter[str] = Counter()
        self.seen: dict[str, dict[str, Any]] = {}
        self.stream_gate = asyncio.Event()
        self.slow_seconds = 5.0
        self.runner: web.AppRunner | None = None

    def service_fetches(self) -> int:
        return self.counts[f"GET /services/{SERVICE}"]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_get("/services/{service}", self.show)
        app.router.add_post("/services/{service}/{workflow}", self.call)
        app.router.add_post("/services/{service}/{workflow}/resume/{execution_id}", self.resume)
        app.router.add_post(
            "/services/{service}/{workflow}/resume/{execution_id}/{mode}", self.resume
        )
        app.router.add_get("/services/{service}/{workflow}/status/{execution_id}", self.status)
        app.router.add_post("/services/{service}/{workflow}/{mode}", self.call)
        return app

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app(), handle_signals=False)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def _count(self, request: web.Request) -> None:
        self.counts[f"{request.method} {request.path}"] += 1
        self.seen[request.path] = {
            "headers": dict(request.headers),
            "query": request.query_string,
        }

    async def health(self, request: web.Request) -> web.Response:
        self._count(request)
        return web.json_response({"status": "ok", "version": "0.1.0", "database": "ok"})

    async def show(self, request: web.Request) -> web.Response:
        self._count(request)
        if request.match_info["service"] != SERVICE:
            return web.json_response({"error": "service_not_found", "message": "no"}, status=404)
        return web.json_response(
            {
                "name": SERVICE,
                "mcp_enabled": False,
                "endpoints": [_endpoint(n) for n in self.names],
                "collisions": self.collisions,
                "unresolved": [],
                "reserved": [n for n in self.names if n in ("health", "mcp")],
            }
        )

    async def call(self, request: web.Request) -> web.StreamResponse:
        self._count(request)
        workflow = request.match_info["workflow"]
        mode = request.match_info.get("mode", "sync")
        detailed = request.query.get("detailed") == "true"
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return web.json_response({"error": "invalid_json", "message": "bad"}, status=400)
        base = f"/services/{SERVICE}/{workflow}"
        if workflow == "echo":
            return web.json_response(
                {"headers": dict(request.headers), "query": request.query_string, "body": body}
            )
        if workflow == "slow":
            await asyncio.sleep(self.slow_seconds)
        if mode == "async":
            shape = _detailed("ex-async", workflow, "CREATED")
            shape["status_url"] = f"{base}/status/ex-async"
            return web.json_response(shape, status=202)
        if mode == "stream":
            return await self.stream(request, workflow, base)
        if workflow == "approve":
            shape = _detailed("ex-pause", workflow, "PAUSED", {"ask": "ok?"})
            shape["resume_url"] = f"{base}/resume/ex-pause"
            return web.json_response(shape, status=202)
        if workflow == "boom":
            shape = _detailed("ex-boom", workflow, "FAILED")
            shape["error"] = {"type": "ValueError", "message": "boom"}
            return web.json_response(shape, status=500)
        if isinstance(body, dict) and "amount" in body and not isinstance(body["amount"], int):
            return web.json_response(
                {
                    "error": "invalid_input",
                    "message": "bad input",
                    "errors": [{"loc": ["amount"], "msg": "not an int", "type": "int_type"}],
                },
                status=422,
            )
        output = {"total": (body or {}).get("amount", 0) * 2}
        if detailed:
            return web.json_response(_detailed("ex-sync", workflow, "COMPLETED", output))
        return web.json_response(output)

    async def stream(self, request: web.Request, workflow: str, base: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        first = _detailed("ex-stream", workflow, "RUNNING")
        await response.write(f"event: state\ndata: {json.dumps(first)}\n\n".encode())
        await asyncio.wait_for(self.stream_gate.wait(), 10)
        last = _detailed("ex-stream", workflow, "PAUSED")
        last["resume_url"] = f"{base}/resume/ex-stream"
        # split mid-event on purpose: the process must put the pieces back together
        text = f"event: state\ndata: {json.dumps(last)}\n\n".encode()
        await response.write(text[:20])
        await asyncio.sleep(0.01)
        await response.write(text[20:])
        await response.write_eof()
        return response

    async def resume(self, request: web.Request) -> web.Response:
        self._count(request)
        workflow = request.match_info["workflow"]
        execution_id = request.match_info["execution_id"]
        if execution_id != "ex-pause":
            return web.json_response({"error": "execution_not_found", "message": "no"}, status=404)
        if request.match_info.get("mode") == "async":
            shape = _detailed(execution_id, workflow, "RUNNING")
            shape["status_url"] = f"/services/{SERVICE}/{workflow}/status/{execution_id}"
            return web.json_response(shape, status=202)
        body = await request.json()
        output = {"approved": body.get("approved")}
        if request.query.get("detailed") == "true":
            return web.json_response(_detailed(execution_id, workflow, "COMPLETED", output))
        return web.json_response(output)

    async def status(self, request: web.Request) -> web.Response:
        self._count(request)
        workflow = request.match_info["workflow"]
        execution_id = request.match_info["execution_id"]
        shape = _detailed(execution_id, workflow, "PAUSED")
        shape["resume_url"] = f"/services/{SERVICE}/{workflow}/resume/{execution_id}"
        return web.json_response(shape)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def upstream():
    server = FakeServer(processes.free_port())
    await server.start()
    yield server
    server.stream_gate.set()
    await server.stop()


def _options(server_url: str, **overrides: Any) -> StandaloneOptions:
    settings = Settings(server_url=server_url, max_body_bytes=overrides.pop("max_body", 1 << 20))
    return StandaloneOptions(
        settings=settings,
        service=overrides.pop("service", SERVICE),
        server_url=server_url,
        cache_ttl=overrides.pop("cache_ttl", 60.0),
        upstream_timeout=overrides.pop("upstream_timeout", 5.0),
        **overrides,
    )


@pytest.fixture
async def clock():
    return Clock()


@pytest.fixture
async def make_client(upstream, clock):
    clients: list[TestClient] = []

    async def make(**overrides: Any) -> TestClient:
        app = build_standalone_app(_options(upstream.url, **overrides), clock=clock)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client):
    return await make_client()


async def test_sync_run_answers_the_raw_output(client, upstream):
    answer = await client.post("/invoice", json={"amount": 21})
    assert answer.status == 200
    assert await answer.json() == {"total": 42}
    assert upstream.counts[f"POST /services/{SERVICE}/invoice"] == 1


async def test_query_and_mode_are_passed_through(client, upstream):
    answer = await client.post("/invoice/sync?detailed=true&version=1", json={"amount": 1})
    assert answer.status == 200
    assert (await answer.json())["state"] == "COMPLETED"
    assert upstream.seen[f"/services/{SERVICE}/invoice/sync"]["query"] == "detailed=true&version=1"


async def test_async_run_points_status_url_at_the_process(client):
    answer = await client.post("/invoice/async", json={"amount": 1})
    assert answer.status == 202
    body = await answer.json()
    assert body["status_url"] == "/invoice/status/ex-async"
    status = await client.get(body["status_url"])
    assert status.status == 200


async def test_pause_resume_and_status_go_through_root_routes(client):
    paused = await client.post("/approve", json={})
    assert paused.status == 202
    body = await paused.json()
    assert body["state"] == "PAUSED"
    assert body["resume_url"] == "/approve/resume/ex-pause"

    status = await client.get("/approve/status/ex-pause")
    assert (await status.json())["resume_url"] == "/approve/resume/ex-pause"

    resumed = await client.post(body["resume_url"], json={"approved": True})
    assert resumed.status == 200
    assert await resumed.json() == {"approved": True}

    later = await client.post("/approve/resume/ex-pause/async", json={"approved": True})
    assert later.status == 202
    assert (await later.json())["status_url"] == "/approve/status/ex-pause"

    unknown = await client.post("/approve/resume/nope", json={})
    assert unknown.status == 404
    assert (await unknown.json())["error"] == "execution_not_found"


async def test_upstream_failures_and_validation_errors_pass_through(client):
    failed = await client.post("/boom", json={})
    assert failed.status == 500
    assert (await failed.json())["error"] == {"type": "ValueError", "message": "boom"}

    invalid = await client.post("/invoice", json={"amount": "many"})
    assert invalid.status == 422
    assert (await invalid.json())["errors"][0]["loc"] == ["amount"]

    malformed = await client.post(
        "/invoice", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert malformed.status == 400
    assert (await malformed.json())["error"] == "invalid_json"


async def test_unknown_colliding_and_reserved_names(client, upstream):
    unknown = await client.post("/nope", json={})
    assert unknown.status == 404
    assert (await unknown.json())["error"] == "endpoint_not_found"

    colliding = await client.post("/process", json={})
    assert colliding.status == 409
    body = await colliding.json()
    assert body["error"] == "name_collision"
    assert body["namespaces"] == ["analytics", "billing"]

    reserved = await client.post("/health", json={})
    assert reserved.status == 404
    assert (await reserved.json())["reserved"] is True

    not_a_name = await client.post("/no.such-thing", json={})
    assert not_a_name.status == 404
    assert (await not_a_name.json())["error"] == "not_found"

    # none of these reached an endpoint of the main server
    assert not [k for k in upstream.counts if k.startswith("POST")]


async def test_authorization_and_end_to_end_headers_are_forwarded_hop_by_hop_ones_not(client):
    answer = await client.post(
        "/echo?x=1",
        json={"a": 1},
        headers={
            "Authorization": "Bearer caller-token",
            "X-Request-Id": "r-1",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic secret",
            "Trailer": "X-Checksum",
            "TE": "trailers",
        },
    )
    assert answer.status == 200
    seen = await answer.json()
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["authorization"] == "Bearer caller-token"
    assert headers["x-request-id"] == "r-1"
    assert headers["content-type"].startswith("application/json")
    for hop in ("keep-alive", "proxy-authorization", "trailer", "te"):
        assert hop not in headers
    assert seen["query"] == "x=1" and seen["body"] == {"a": 1}


async def test_the_refresh_carries_the_callers_authorization(client, upstream, clock):
    await client.post("/invoice", json={})
    clock.now += 61  # expired: the next call refreshes with its caller's credentials
    await client.post("/invoice", json={}, headers={"Authorization": "Bearer caller-token"})
    assert (
        upstream.seen[f"/services/{SERVICE}"]["headers"]["Authorization"] == "Bearer caller-token"
    )


async def test_stream_mode_is_relayed_as_it_comes_with_the_last_url_rewritten(client, upstream):
    answer = await client.post("/ticker/stream", json={})
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/event-stream")
    # the first event arrives while the main server still holds the rest back
    first = await asyncio.wait_for(answer.content.readuntil(b"\n\n"), 5)
    assert b'"RUNNING"' in first
    upstream.stream_gate.set()
    rest = await asyncio.wait_for(answer.content.read(), 5)
    data = [json.loads(line[5:]) for line in rest.split(b"\n") if line.startswith(b"data:")]
    assert data[-1]["state"] == "PAUSED"
    assert data[-1]["resume_url"] == "/ticker/resume/ex-stream"


async def test_a_body_over_the_limit_is_413_json(make_client, upstream):
    small = await make_client(max_body=1000)
    answer = await small.post(
        "/invoice",
        data=b'{"x": "' + b"a" * 5000 + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert answer.status == 413
    assert (await answer.json())["error"] == "payload_too_large"
    assert upstream.counts[f"POST /services/{SERVICE}/invoice"] == 0


async def test_a_slow_server_is_504_and_a_dead_one_503_then_it_recovers(make_client, upstream):
    client = await make_client(upstream_timeout=0.5)
    upstream.slow_seconds = 1.5
    slow = await client.post("/slow", json={})
    assert slow.status == 504
    assert (await slow.json())["error"] == "upstream_timeout"

    await upstream.stop()
    down = await client.post("/invoice", json={"amount": 1})
    assert down.status == 503
    body = await down.json()
    assert body["error"] == "upstream_unavailable" and body["message"]
    health = await client.get("/health")
    assert health.status == 503
    assert (await health.json())["server"]["reachable"] is False

    await upstream.start()  # same port, no restart of the process
    back = await client.post("/invoice", json={"amount": 1})
    assert back.status == 200
    assert await back.json() == {"total": 2}


async def test_the_endpoint_list_expires_after_the_ttl(client, upstream, clock):
    assert (await client.post("/invoice", json={})).status == 200
    upstream.names.remove("invoice")  # excluded on the main server
    clock.now += 30
    assert (await client.post("/invoice", json={})).status == 200  # within the TTL
    clock.now += 31
    gone = await client.post("/invoice", json={})
    assert gone.status == 404


async def test_a_workflow_registered_after_start_is_found_on_the_first_miss(
    client, upstream, clock
):
    assert (await client.post("/invoice", json={})).status == 200
    fetches = upstream.service_fetches()
    upstream.names.append("refund")
    clock.now += 1
    answer = await client.post("/refund", json={"amount": 2})
    assert answer.status == 200
    assert upstream.service_fetches() == fetches + 1


async def test_a_flood_of_unknown_names_hits_the_server_a_handful_of_times(client, upstream, clock):
    assert (await client.post("/invoice", json={})).status == 200
    clock.now += 5
    before = upstream.service_fetches()
    answers = await asyncio.gather(*(client.post("/ghost", json={}) for _ in range(200)))
    assert {a.status for a in answers} == {404}
    assert upstream.service_fetches() - before <= 2
    distinct = await asyncio.gather(*(client.post(f"/ghost{i}", json={}) for i in range(100)))
    assert {a.status for a in distinct} == {404}
    assert upstream.service_fetches() - before <= 3


async def test_health_reports_the_service_cache_and_server(client, upstream, clock):
    await client.post("/invoice", json={})
    clock.now += 2.5
    answer = await client.get("/health")
    assert answer.status == 200
    body = await answer.json()
    assert body["status"] == "ok"
    assert body["service"] == SERVICE
    assert body["endpoints"] == len(upstream.names) - 1  # `health` is not served here
    assert body["cache_age"] == pytest.approx(2.5)
    assert body["server"] == {"url": upstream.url, "reachable": True}


async def test_start_reports_names_clashing_with_the_process_routes(make_client, upstream, capfd):
    client = await make_client()
    for _ in range(100):
        if client.app[GATEWAY].cache.data is not None:
            break
        await asyncio.sleep(0.02)
    assert "health" in capfd.readouterr().err


async def test_an_unknown_service_is_404(make_client, upstream):
    client = await make_client(service="nosuch")
    answer = await client.post("/invoice", json={})
    assert answer.status == 404
    assert (await answer.json())["error"] == "service_not_found"


async def test_the_gateway_call_gives_detailed_bodies_with_local_urls(client, upstream):
    gateway = client.app[GATEWAY]
    status, body = await gateway.call("invoice", "run", body={"amount": 2})
    assert status == 200 and body["output"] == {"total": 4}
    assert upstream.seen[f"/services/{SERVICE}/invoice"]["query"] == "detailed=true"
    status, body = await gateway.call("approve", "run", body={})
    assert status == 202 and body["resume_url"] == "/approve/resume/ex-pause"
    status, body = await gateway.call(
        "approve", "resume", body={"approved": 1}, execution_id="ex-pause"
    )
    assert status == 200 and body["output"] == {"approved": 1}
    status, body = await gateway.call("approve", "status", execution_id="ex-pause")
    assert status == 200 and body["resume_url"] == "/approve/resume/ex-pause"
    status, body = await gateway.call("invoice", "async", body={})
    assert status == 202 and body["status_url"] == "/invoice/status/ex-async"
    status, body = await gateway.call("nope", "run", body={})
    assert status == 404 and body["error"] == "endpoint_not_found"
    status, body = await gateway.call("process", "run", body={})
    assert status == 409
    names = [e.name for e in await gateway.endpoints()]
    assert "invoice" in names and "health" not in names and "process" not in names


async def test_the_process_uses_an_injected_session_and_leaves_it_open(upstream):
    async with aiohttp.ClientSession() as session:
        app = build_standalone_app(_options(upstream.url), session=session)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            assert (await client.post("/invoice", json={"amount": 1})).status == 200
        assert not session.closed


# ---------------------------------------------------------------------------------------------
# Real processes: `flux start server` and `flux service start`, talking HTTP on 127.0.0.1.


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
    answer = await pause("approval")
    return {"approved": answer}


@workflow.with_options(namespace="billing")
async def boom(ctx: ExecutionContext):
    raise ValueError("boom")


@workflow.with_options(namespace="billing")
async def health(ctx: ExecutionContext):
    return "clashes with the process's own /health"


@workflow.with_options(namespace="billing")
async def process(ctx: ExecutionContext):
    return "billing"
'''

ANALYTICS = """
from flux import ExecutionContext, workflow


@workflow.with_options(namespace="analytics")
async def process(ctx: ExecutionContext):
    return "analytics"
"""

REFUND = """
from flux import ExecutionContext, workflow


@workflow.with_options(namespace="billing")
async def refund(ctx: ExecutionContext):
    return {"refunded": ctx.input}
"""


def _setup_service(server_url: str) -> None:
    for name, source in (("billing.py", BILLING), ("analytics.py", ANALYTICS)):
        status, body = processes.register_source(server_url, source, name)
        assert status == 201, body
    status, body = processes.http(
        "POST",
        f"{server_url}/services",
        {"name": SERVICE, "namespaces": ["billing", "analytics"]},
    )
    assert status == 201, body


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("standalone-live")
    server = processes.start_server(cwd)
    standalone = None
    try:
        _setup_service(server.url)
        standalone = processes.start_standalone(
            cwd, SERVICE, server.url, "--cache-ttl", "1", "--upstream-timeout", "20"
        )
        yield server, standalone
    finally:
        if standalone is not None:
            standalone.stop()
        server.stop()


def test_live_runs_through_every_root_route(live):
    _, sa = live
    status, body = processes.http("POST", f"{sa.url}/invoice", {"customer_id": "C1", "amount": 2})
    assert (status, body) == (200, {"customer": "C1", "total": 4.0})

    status, body = processes.http(
        "POST", f"{sa.url}/invoice/sync?detailed=true", {"customer_id": "C1", "amount": 1}
    )
    assert status == 200 and body["state"] == "COMPLETED" and body["workflow"] == "invoice"

    status, body = processes.http(
        "POST", f"{sa.url}/invoice/async", {"customer_id": "C", "amount": 1}
    )
    assert status == 202
    execution_id = body["execution_id"]
    assert body["status_url"] == f"/invoice/status/{execution_id}"
    done = processes.until(
        lambda: (
            (s := processes.http("GET", sa.url + body["status_url"]))[1].get("state") == "COMPLETED"
            and s
        ),
        10,
    )
    assert done and done[1]["output"] == {"customer": "C", "total": 2.0}

    status, paused = processes.http("POST", f"{sa.url}/approve", {})
    assert status == 202 and paused["state"] == "PAUSED"
    assert paused["resume_url"] == f"/approve/resume/{paused['execution_id']}"
    status, body = processes.http("GET", f"{sa.url}/approve/status/{paused['execution_id']}")
    assert status == 200 and body["resume_url"] == paused["resume_url"]
    status, body = processes.http("POST", sa.url + paused["resume_url"], {"ok": True})
    assert (status, body) == (200, {"approved": {"ok": True}})
    status, body = processes.http("POST", sa.url + paused["resume_url"], {"ok": True})
    assert status == 409  # not paused any more

    status, paused = processes.http("POST", f"{sa.url}/approve", {})
    status, body = processes.http(
        "POST", f"{sa.url}/approve/resume/{paused['execution_id']}/async", {"ok": 1}
    )
    assert status == 202 and body["status_url"] == f"/approve/status/{paused['execution_id']}"


def test_live_answers_pass_the_execution_id_through(live):
    _, sa = live
    status, body, headers = processes.exchange("POST", f"{sa.url}/approve", {})
    assert status == 202 and headers["Flux-Execution-Id"] == body["execution_id"]
    status, _, headers = processes.exchange(
        "POST", f"{sa.url}/approve/resume/{body['execution_id']}", {"ok": 1}
    )
    assert status == 200 and headers["Flux-Execution-Id"] == body["execution_id"]
    status, text, headers = processes.exchange("POST", f"{sa.url}/approve/stream", {})
    assert status == 200 and headers["Flux-Execution-Id"] in text


def test_live_cancel_goes_through_the_root_route(live):
    _, sa = live
    status, paused = processes.http("POST", f"{sa.url}/approve", {})
    assert status == 202 and paused["state"] == "PAUSED"
    cancel = f"{sa.url}/approve/cancel/{paused['execution_id']}"
    status, body, headers = processes.exchange("POST", cancel)
    assert status == 200 and body["state"] == "CANCELLED", body
    assert headers["Flux-Execution-Id"] == paused["execution_id"]
    assert processes.http("POST", cancel) == (200, body)
    status, done = processes.http(
        "POST", f"{sa.url}/invoice?detailed=true", {"customer_id": "C", "amount": 1}
    )
    assert status == 200
    status, refused = processes.http("POST", f"{sa.url}/invoice/cancel/{done['execution_id']}")
    assert status == 409 and refused["state"] == "COMPLETED"


def test_live_errors_keep_their_status_and_shape(live):
    _, sa = live
    status, body = processes.http("POST", f"{sa.url}/boom", {})
    assert status == 500 and body["state"] == "FAILED" and body["error"]["type"] == "ValueError"
    status, body = processes.http("POST", f"{sa.url}/invoice", {"customer_id": "C"})
    assert status == 422 and body["errors"]
    status, body = processes.http("POST", f"{sa.url}/invoice", raw=b"{nope")
    assert status == 400 and "error" in body
    status, body = processes.http("POST", f"{sa.url}/invoice/sideways", {})
    assert status == 400
    status, body = processes.http("POST", f"{sa.url}/invoice", raw=b'"' + b"a" * (2 << 20) + b'"')
    assert status == 413 and body["error"] == "payload_too_large"
    status, body = processes.http("GET", f"{sa.url}/invoice/status/unknown-id")
    assert status == 404
    status, body = processes.http("POST", f"{sa.url}/nope", {})
    assert status == 404 and body["error"] == "endpoint_not_found"
    status, body = processes.http("POST", f"{sa.url}/process", {})
    assert status == 409 and sorted(body["namespaces"]) == ["analytics", "billing"]
    status, body = processes.http("POST", f"{sa.url}/health", {})
    assert status == 404


def test_live_stream_ends_with_the_final_shape_and_local_urls(live):
    _, sa = live
    status, text = processes.http("POST", f"{sa.url}/approve/stream", {})
    assert status == 200
    data = [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]
    assert data[-1]["state"] == "PAUSED"
    assert data[-1]["resume_url"] == f"/approve/resume/{data[-1]['execution_id']}"


def test_live_health_and_start_log(live):
    _, sa = live
    status, body = processes.http("GET", f"{sa.url}/health")
    assert status == 200 and body["status"] == "ok" and body["service"] == SERVICE
    assert body["server"]["reachable"] is True
    assert body["endpoints"] >= 3 and body["cache_age"] is not None
    assert "health" in sa.log()  # the clash with the process's own route was reported


def test_live_discovery_and_exclusion_follow_the_catalog(live):
    server, sa = live
    status, _ = processes.http("POST", f"{sa.url}/refund", {})
    assert status == 404
    assert processes.register_source(server.url, REFUND, "refund.py")[0] == 201
    # the negative entry for `refund` lasts at most min(ttl, 2 s)
    found = processes.until(lambda: processes.http("POST", f"{sa.url}/refund", 7)[0] == 200, 4)
    assert found

    status, body = processes.http(
        "PUT", f"{server.url}/services/{SERVICE}", {"add_exclusions": ["billing/refund"]}
    )
    assert status == 200, body
    excluded_at = time.monotonic()
    gone = processes.until(lambda: processes.http("POST", f"{sa.url}/refund", 7)[0] == 404, 4, 0.05)
    assert gone and time.monotonic() - excluded_at < 1.5  # within one TTL (1 s), plus slack


def test_live_flood_of_unknown_names_is_answered(live):
    _, sa = live

    def call(index: int) -> int:
        return processes.http("POST", f"{sa.url}/ghost", {}, timeout=20)[0]

    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(call, range(200)))
    assert set(statuses) == {404}


def test_live_server_down_is_503_and_service_resumes_when_it_is_back(tmp_path):
    server = processes.start_server(tmp_path)
    sa = None
    try:
        _setup_service(server.url)
        sa = processes.start_standalone(
            tmp_path, SERVICE, server.url, "--cache-ttl", "1", "--upstream-timeout", "5"
        )
        payload = {"customer_id": "C", "amount": 1}
        assert processes.http("POST", f"{sa.url}/invoice", payload)[0] == 200

        server.kill()
        status, body = processes.http("POST", f"{sa.url}/invoice", payload)
        assert status == 503 and body["error"] == "upstream_unavailable"
        status, body = processes.http("GET", f"{sa.url}/health")
        assert status == 503 and body["server"]["reachable"] is False

        server = processes.start_server(tmp_path, port=server.port)
        back = processes.until(
            lambda: processes.http("POST", f"{sa.url}/invoice", payload)[0] == 200, 10, 0.2
        )
        assert back
        assert processes.http("GET", f"{sa.url}/health")[1]["status"] == "ok"
    finally:
        if sa is not None:
            sa.stop()
        server.stop()
