"""CORS on real processes: a main server with `cors.allowed_origins` set, one with the default
(off), and a standalone process allowing any origin ("*") in front of them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e import processes
from tests.e2e.conftest import Api
from tests.e2e.sse import open_stream, read_events

SOURCE = """
from flux import ExecutionContext, workflow


@workflow.with_options(namespace="corsns")
async def echo(ctx: ExecutionContext):
    return {"echo": ctx.input}
"""

ALLOWED = "https://app.example"
OTHER_ALLOWED = "http://localhost:3000"
STRANGER = "https://evil.example"
ALLOW = "Access-Control-Allow-Origin"
EXPOSE = "Access-Control-Expose-Headers"


def _server(cwd: Any, env: dict[str, str] | None = None) -> processes.FluxProcess:
    server = processes.start_server(cwd, env=env)
    api = Api(server.url)
    api.register(SOURCE, "corsns.py")
    api.service("corsy", namespaces=["corsns"])
    return server


@pytest.fixture(scope="module")
def cors_on(tmp_path_factory) -> Iterator[processes.FluxProcess]:
    origins = f"{ALLOWED},{OTHER_ALLOWED}"
    server = _server(tmp_path_factory.mktemp("cors-on"), {"FLUX_CORS__ALLOWED_ORIGINS": origins})
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cors_off(tmp_path_factory) -> Iterator[processes.FluxProcess]:
    server = _server(tmp_path_factory.mktemp("cors-off"))
    try:
        yield server
    finally:
        server.stop()


def _preflight(url: str, origin: str, method: str = "POST") -> tuple[int, Any, Any]:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "content-type, idempotency-key, last-event-id",
    }
    return processes.exchange("OPTIONS", url, headers=headers)


def _vary(headers: Any) -> set[str]:
    values = headers.get_all("Vary") or []
    return {part.strip().lower() for value in values for part in value.split(",")}


@pytest.mark.parametrize(
    "path",
    [
        "/services/corsy/echo",
        "/services/corsy/echo/async",
        "/services/corsy/echo/events/some-id",
        "/workflows/corsns/echo/run",
        "/workflows/corsns/echo/status/some-id",
    ],
)
def test_a_preflight_from_an_allowed_origin_is_204_with_what_may_be_sent(cors_on, path):
    status, body, headers = _preflight(cors_on.url + path, ALLOWED)
    assert status == 204, body
    assert headers.get_all(ALLOW) == [ALLOWED]
    assert "origin" in _vary(headers)
    assert {m.strip() for m in headers["Access-Control-Allow-Methods"].split(",")} == {
        "GET",
        "POST",
        "OPTIONS",
    }
    allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed == {
        "content-type",
        "authorization",
        "idempotency-key",
        "prefer",
        "last-event-id",
        "flux-callback-url",
    }
    assert int(headers["Access-Control-Max-Age"]) > 0


def test_answers_to_an_allowed_origin_carry_the_cors_headers_errors_and_streams_too(cors_on):
    url = cors_on.url + "/services/corsy/echo"
    status, body, headers = processes.exchange("POST", url, {"a": 1}, headers={"Origin": ALLOWED})
    assert status == 200 and body == {"echo": {"a": 1}}
    assert headers.get_all(ALLOW) == [ALLOWED]
    exposed = {h.strip() for h in headers[EXPOSE].split(",")}
    assert exposed == {"Flux-Execution-Id", "Idempotent-Replayed", "Preference-Applied"}
    assert "origin" in _vary(headers)

    other = {"Origin": OTHER_ALLOWED}
    status, body, headers = processes.exchange(
        "GET", cors_on.url + "/services/corsy/echo/status/nope", headers=other
    )
    assert status == 404 and body["error"] == "execution_not_found"
    assert headers.get_all(ALLOW) == [OTHER_ALLOWED]

    status, body, headers = processes.exchange("POST", url, raw=b"{", headers=other)
    assert status == 400 and headers.get_all(ALLOW) == [OTHER_ALLOWED]

    stream = open_stream(url + "/stream", "POST", {"b": 2}, headers={"Origin": ALLOWED})
    try:
        assert stream.status == 200
        assert stream.header(ALLOW) == ALLOWED
        assert "Flux-Execution-Id" in (stream.header(EXPOSE) or "")
        assert read_events(stream)[-1].data["state"] == "COMPLETED"
    finally:
        stream.close()


def test_a_disallowed_origin_gets_no_cors_headers_and_its_preflight_is_403(cors_on):
    url = cors_on.url + "/services/corsy/echo"
    status, body, headers = _preflight(url, STRANGER)
    assert status == 403 and body["error"] == "forbidden", body
    assert headers.get(ALLOW) is None
    status, body, headers = processes.exchange("POST", url, {"c": 3}, headers={"Origin": STRANGER})
    assert status == 200  # the server answers; the browser keeps the answer from the page
    assert headers.get(ALLOW) is None and headers.get(EXPOSE) is None


def test_management_routes_and_requests_without_origin_get_none(cors_on):
    status, _, headers = processes.exchange(
        "GET", cors_on.url + "/services", headers={"Origin": ALLOWED}
    )
    assert status == 200 and headers.get(ALLOW) is None
    status, _, headers = processes.exchange("POST", cors_on.url + "/services/corsy/echo", {})
    assert status == 200 and headers.get(ALLOW) is None


def test_cors_is_off_by_default(cors_off):
    url = cors_off.url + "/services/corsy/echo"
    _, _, headers = _preflight(url, ALLOWED)  # a plain OPTIONS answer (its Allow header)
    assert headers.get(ALLOW) is None and headers.get("Access-Control-Allow-Methods") is None
    status, _, headers = processes.exchange("POST", url, {}, headers={"Origin": ALLOWED})
    assert status == 200 and headers.get(ALLOW) is None


def _standalone(cwd: Any, server_url: str, env: dict[str, str]) -> processes.FluxProcess:
    port = processes.free_port()
    args = ["service", "start", "corsy", "--host", "127.0.0.1", "--port", str(port)]
    return processes.FluxProcess([*args, "--server-url", server_url], cwd, port, env).start()


def test_the_standalone_process_answers_any_origin_with_star(cors_off, cors_on, tmp_path):
    for upstream in (cors_off, cors_on):
        standalone = _standalone(tmp_path, upstream.url, {"FLUX_CORS__ALLOWED_ORIGINS": "*"})
        try:
            status, body, headers = _preflight(standalone.url + "/echo", STRANGER)
            assert status == 204, body
            assert headers.get_all(ALLOW) == [STRANGER]
            status, body, headers = processes.exchange(
                "POST", standalone.url + "/echo", {"d": 4}, headers={"Origin": STRANGER}
            )
            assert status == 200 and body == {"echo": {"d": 4}}
            # Its own header only, whatever the main server says to the origin it passes on.
            assert headers.get_all(ALLOW) == [STRANGER]
            assert "Flux-Execution-Id" in headers[EXPOSE]
        finally:
            standalone.stop()


def test_the_standalone_process_is_off_by_default(cors_on, tmp_path):
    standalone = _standalone(tmp_path, cors_on.url, {})
    try:
        status, _, headers = processes.exchange(
            "POST", standalone.url + "/echo", {}, headers={"Origin": ALLOWED}
        )
        # The main server allows that origin, but CORS belongs to each hop: none relayed.
        assert status == 200 and headers.get(ALLOW) is None
    finally:
        standalone.stop()
