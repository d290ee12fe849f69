"""Bad input against a real server: refused with a 4xx, the same way on every route and mode,
never a 500 (docs/http-api.md, "Input limits")."""

from __future__ import annotations

import socket
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e import processes

SOURCE = """
from pydantic import BaseModel

from flux import ExecutionContext, pause, workflow

NS = "NS_HERE"


class Order(BaseModel):
    amount: float
    quantity: int


@workflow.with_options(namespace=NS)
async def priced(ctx: ExecutionContext[Order]):
    return {"total": ctx.input.amount * ctx.input.quantity}


@workflow.with_options(namespace=NS)
async def echo(ctx: ExecutionContext):
    return {"got": ctx.input}


@workflow.with_options(namespace=NS)
async def gate(ctx: ExecutionContext):
    return {"answer": await pause("approval")}


@workflow.with_options(namespace=NS)
async def not_a_number(ctx: ExecutionContext):
    return {"ratio": float("nan")}
"""

SERVICE = "badin"
BASE = f"/services/{SERVICE}"
BY_REF = f"/workflows/{SERVICE}"
DEEP = b"[" * 5000 + b"]" * 5000
NON_FINITE = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b'{"x": [NaN]}', b'{"x": -1e400}']


@pytest.fixture(scope="module", autouse=True)
def service(api):
    api.register(SOURCE.replace("NS_HERE", SERVICE), "badin.py")
    api.service(SERVICE, namespaces=[SERVICE])


@pytest.fixture(scope="module")
def paused(api) -> str:
    status, body = api.post(f"{BASE}/gate?detailed=true", {})
    assert status == 202, body
    return body["execution_id"]


def _post(api, path: str, raw: bytes, ctype: str | None = "application/json"):
    headers = {} if ctype is None else {"Content-Type": ctype}
    return processes.http("POST", api.url + path, raw=raw, headers=headers)


def _body_routes(paused_id: str) -> list[tuple[str, str]]:
    return [
        ("POST", f"{BASE}/echo"),
        ("POST", f"{BASE}/echo/async"),
        ("POST", f"{BASE}/echo/stream"),
        ("POST", f"{BY_REF}/echo/run"),
        ("POST", f"{BY_REF}/echo/run/async"),
        ("POST", f"{BASE}/gate/resume/{paused_id}"),
        ("POST", f"{BY_REF}/gate/resume/{paused_id}/async"),
        ("POST", "/services"),
        ("PUT", f"/services/{SERVICE}"),
    ]


# -- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["svc\n", "svc\r", "svc\t", "svc\x00", "svc\x7f"])
def test_names_with_control_characters_are_refused(api, bad: str) -> None:
    assert api.post("/services", {"name": bad})[0] == 400
    assert api.post("/services", {"name": "ok", "namespaces": [bad]})[0] == 400
    assert api.post("/services", {"name": "ok", "workflows": [f"{SERVICE}/{bad}"]})[0] == 400
    for key in ("add_namespaces", "remove_namespaces"):
        assert api.put(f"/services/{SERVICE}", {key: [bad]})[0] == 400
    for key in ("add_workflows", "remove_workflows", "add_exclusions", "remove_exclusions"):
        assert api.put(f"/services/{SERVICE}", {key: [f"{bad}/echo"]})[0] == 400
        assert api.put(f"/services/{SERVICE}", {key: [f"{SERVICE}/echo{bad}"]})[0] == 400
    quoted = urllib.parse.quote(bad)
    assert api.get(f"/workflows?namespace={quoted}")[0] == 400


def test_registration_refuses_a_name_ending_in_a_newline(api) -> None:
    source = 'from flux import workflow\n\n@workflow.with_options(name="late\\n")\nasync def late(ctx):\n    return 1\n'
    status, body = processes.register_source(api.url, source, "late.py")
    assert status == 400, body


# -- bodies ------------------------------------------------------------------------------------


def test_deep_nesting_is_a_400_on_every_body_route(api, paused) -> None:
    for method, path in _body_routes(paused):
        status, body = processes.http(method, api.url + path, raw=DEEP)
        assert status == 400, (path, body)
        assert "deeper than 64" in body["message"], body


@pytest.mark.parametrize("raw", NON_FINITE)
def test_non_finite_numbers_are_a_400(api, paused, raw: bytes) -> None:
    for method, path in _body_routes(paused):
        status, body = processes.http(method, api.url + path, raw=raw)
        assert status == 400, (path, raw, body)
        assert body["error"] == "invalid_request"


def test_a_non_finite_output_fails_the_run(api) -> None:
    status, body = api.post(f"{BASE}/not_a_number")
    assert status == 500, body
    assert body["state"] == "FAILED"
    assert body["error"]["type"] == "ValueError"
    assert "output is not valid JSON: NaN" in body["error"]["message"]


@pytest.mark.parametrize(
    "ctype", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data; b=x"]
)
def test_a_body_that_is_not_json_is_a_415(api, paused, ctype: str) -> None:
    for path in (f"{BASE}/echo", f"{BY_REF}/echo/run/async", f"{BASE}/gate/resume/{paused}"):
        status, body = _post(api, path, b"a=1", ctype)
        assert status == 415, (path, body)
        assert body["error"] == "unsupported_media_type"
        assert body["accepted"] == "application/json"


def test_json_without_a_content_type_is_accepted(api) -> None:
    assert _post(api, f"{BASE}/echo", b'{"a": 1}', None) == (200, {"got": {"a": 1}})
    assert _post(api, f"{BASE}/echo", b'{"a": 1}', "application/merge-patch+json")[0] == 200


def _raw_exchange(port: int, head: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        return sock.recv(65536)


def test_expect_continue_over_the_limit_is_a_413_at_once(api, flux_server) -> None:
    head = (
        f"POST {BASE}/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {10 << 20}\r\nExpect: 100-continue\r\n\r\n"
    ).encode()
    answer = _raw_exchange(flux_server.port, head)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"100 Continue" not in answer


def test_expect_continue_within_the_limit_continues(api, flux_server) -> None:
    body = b'{"a": 2}'
    head = (
        f"POST {BASE}/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", flux_server.port), timeout=10) as sock:
        sock.sendall(head)
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert answer.endswith(b'{"got":{"a":2}}')


# -- typed input: HTTP and MCP agree -----------------------------------------------------------


def test_typed_input_is_strict_over_http(api) -> None:
    status, body = api.post(f"{BASE}/priced", {"amount": "3", "quantity": True})
    assert status == 422, body
    assert sorted(tuple(e["loc"]) for e in body["errors"]) == [("amount",), ("quantity",)]
    assert api.post(f"{BASE}/priced", {"amount": 3, "quantity": 2}) == (200, {"total": 6.0})


def test_typed_input_is_strict_over_mcp_tools(api) -> None:
    """The schema the server publishes is the one MCP tool arguments are checked against."""
    from core.errors import InputValidationError
    from core.mcp_tools import arguments_to_body, tools_for
    from core.model import Endpoint, WorkflowInfo, WorkflowRef

    _, service = api.get(f"/services/{SERVICE}")
    (endpoint,) = [e for e in service["endpoints"] if e["name"] == "priced"]
    _, openapi = api.get(f"/services/{SERVICE}/openapi.json")
    assert "amount" in str(openapi)  # the same typed fields are published there
    info = WorkflowInfo(
        WorkflowRef(SERVICE, "priced"), endpoint["version"], endpoint["input_schema"]
    )
    (run, *_) = tools_for([Endpoint("priced", info)])
    with pytest.raises(InputValidationError) as refused:
        arguments_to_body(run, {"amount": "3", "quantity": True})
    locs = sorted(tuple(e["loc"]) for e in refused.value.details["errors"])
    assert locs == [("amount",), ("quantity",)]
    assert arguments_to_body(run, {"amount": 3, "quantity": 2})[0] == {"amount": 3, "quantity": 2}


# -- query parameters --------------------------------------------------------------------------

BAD_VERSIONS = ["9223372036854775808", "1" * 23, "²", "①", "٣", "３", "0", "-1", "1.0", "x"]
BAD_FLAGS = ["null", "0.57", "maybe", "２"]


def _query_routes(paused_id: str) -> list[tuple[str, str, object]]:
    return [
        ("POST", f"{BASE}/echo", {}),
        ("POST", f"{BASE}/echo/async", {}),
        ("POST", f"{BASE}/echo/stream", {}),
        ("POST", f"{BY_REF}/echo/run", {}),
        ("POST", f"{BY_REF}/echo/run/async", {}),
        ("POST", f"{BASE}/gate/resume/{paused_id}/async", None),
        ("GET", f"{BASE}/echo/status/{paused_id}", None),
        ("GET", f"{BY_REF}/echo/status/{paused_id}", None),
    ]


def _call(api, method: str, path: str, query: str, body: object) -> tuple[int, object]:
    url = f"{api.url}{path}?{query}"
    return processes.http(method, url, body)


@pytest.mark.parametrize("value", BAD_VERSIONS)
def test_a_bad_version_is_a_400_on_every_route(api, paused, value: str) -> None:
    query = "version=" + urllib.parse.quote(value)
    for method, path, body in _query_routes(paused):
        status, answer = _call(api, method, path, query, body)
        assert status == 400, (path, value, answer)
    assert api.delete(f"{BY_REF}/echo?{query}")[0] == 400


@pytest.mark.parametrize("value", BAD_FLAGS)
def test_a_bad_detailed_is_a_400_on_every_route_and_mode(api, paused, value: str) -> None:
    query = "detailed=" + urllib.parse.quote(value)
    for method, path, body in _query_routes(paused):
        status, answer = _call(api, method, path, query, body)
        assert status == 400, (path, value, answer)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=st.sampled_from(["version", "detailed", "namespace"]), value=st.text(max_size=24))
def test_any_query_value_is_never_a_5xx_and_parses_alike(api, paused, name, value) -> None:
    query = urllib.parse.urlencode({name: value})
    refused = set()
    for method, path, body in _query_routes(paused):
        status, answer = _call(api, method, path, query, body)
        assert status < 500, (path, query, answer)
        refused.add(status == 400 and isinstance(answer, dict) and answer.get("parameter") == name)
    # The same value is refused on every route or on none.
    assert len(refused) == 1, (query, refused)
    assert api.get(f"/workflows?{query}")[0] < 500
    assert api.delete(f"{BY_REF}/nothing_here?{query}")[0] < 500
