"""Every row of the status table of docs/http-api.md, through service endpoints of a real server."""

from __future__ import annotations

import http.client
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e import processes

RUNS = '''
import asyncio

from pydantic import BaseModel

from flux import ExecutionContext, pause, task, workflow

NS = "NS_HERE"


class Order(BaseModel):
    customer_id: str
    amount: float


@task
async def double(x: float) -> float:
    return x * 2


@task
async def nap(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@workflow.with_options(namespace=NS)
async def order(ctx: ExecutionContext[Order]):
    """Price an order."""
    return {"customer": ctx.input.customer_id, "total": await double(ctx.input.amount)}


@workflow.with_options(namespace=NS)
async def echo(ctx: ExecutionContext):
    return {"got": ctx.input}


@workflow.with_options(namespace=NS)
async def slow(ctx: ExecutionContext):
    await nap(0.3)
    return "slept"


@workflow.with_options(namespace=NS)
async def approve(ctx: ExecutionContext):
    answer = await pause("approval")
    return {"approved": answer}


@workflow.with_options(namespace=NS)
async def boom(ctx: ExecutionContext):
    raise ValueError("kaput")
'''

DETAILED_KEYS = {"execution_id", "state", "output", "namespace", "workflow"}
SERVICE = "runs"
BASE = f"/services/{SERVICE}"


@pytest.fixture(scope="module", autouse=True)
def runs_service(api):
    api.register(RUNS.replace("NS_HERE", SERVICE), "runs.py")
    api.service(SERVICE, namespaces=[SERVICE])


def _settled(api, status_url: str, timeout: float = 15.0) -> dict:
    def done():
        status, body = api.get(status_url)
        assert status == 200, body
        return body if body["state"] not in ("CREATED", "RUNNING") else None

    body = processes.until(done, timeout)
    assert body, f"{status_url} did not settle in {timeout}s"
    return body


def _assert_error(body: dict, code: str | None = None) -> None:
    assert isinstance(body, dict) and isinstance(body.get("message"), str), body
    if code is not None:
        assert body["error"] == code, body
    else:
        assert isinstance(body.get("error"), str), body


# -- 200 --------------------------------------------------------------------------------------


def test_a_completed_sync_run_answers_the_raw_output(api):
    order = {"customer_id": "C1", "amount": 2}
    assert api.post(f"{BASE}/order", order) == (200, {"customer": "C1", "total": 4.0})
    assert api.post(f"{BASE}/order/sync", order) == (200, {"customer": "C1", "total": 4.0})
    # A raw output may itself be any JSON value, returned as is.
    assert api.post(f"{BASE}/echo", [1, "two"]) == (200, {"got": [1, "two"]})


def test_detailed_true_answers_the_detailed_shape(api):
    status, body = api.post(f"{BASE}/order?detailed=true", {"customer_id": "C2", "amount": 1.5})
    assert status == 200
    assert set(body) == DETAILED_KEYS
    assert body["state"] == "COMPLETED"
    assert body["output"] == {"customer": "C2", "total": 3.0}
    assert (body["namespace"], body["workflow"]) == (SERVICE, "order")
    # The id is real: its status is the same completed execution.
    status, again = api.get(f"{BASE}/order/status/{body['execution_id']}")
    assert status == 200 and again == body


# -- 202 async ----------------------------------------------------------------------------------


def test_async_is_accepted_with_a_status_url_then_completes(api):
    status, body = api.post(f"{BASE}/slow/async", {})
    assert status == 202, body
    execution_id = body["execution_id"]
    assert body["state"] == "CREATED"
    assert body["output"] is None
    assert body["status_url"] == f"{BASE}/slow/status/{execution_id}"
    assert (body["namespace"], body["workflow"]) == (SERVICE, "slow")

    final = _settled(api, body["status_url"])
    assert final["state"] == "COMPLETED" and final["output"] == "slept"
    assert set(final) == DETAILED_KEYS


# -- 202 paused, resume, 409 --------------------------------------------------------------------


def test_a_sync_call_that_pauses_answers_202_at_once_then_resumes(api):
    started = time.monotonic()
    status, paused = api.post(f"{BASE}/approve", {"amount": 10})
    assert time.monotonic() - started < 10  # does not wait for a resume
    assert status == 202, paused
    execution_id = paused["execution_id"]
    assert paused["state"] == "PAUSED"
    assert paused["resume_url"] == f"{BASE}/approve/resume/{execution_id}"
    assert DETAILED_KEYS <= set(paused)

    status, body = api.get(f"{BASE}/approve/status/{execution_id}")
    assert status == 200
    assert body["state"] == "PAUSED" and body["resume_url"] == paused["resume_url"]

    assert api.post(paused["resume_url"], {"ok": True}) == (200, {"approved": {"ok": True}})

    status, body = api.post(paused["resume_url"], {"ok": False})
    assert status == 409, body
    _assert_error(body)
    assert body["state"] == "COMPLETED"

    status, body = api.get(f"{BASE}/approve/status/{execution_id}")
    assert status == 200
    assert body["state"] == "COMPLETED" and body["output"] == {"approved": {"ok": True}}
    assert "resume_url" not in body


def test_resume_with_detailed_and_async_modes(api):
    _, first = api.post(f"{BASE}/approve", {})
    status, body = api.post(first["resume_url"] + "?detailed=true", "yes")
    assert status == 200
    assert body["state"] == "COMPLETED" and body["output"] == {"approved": "yes"}

    _, second = api.post(f"{BASE}/approve", {})
    status, body = api.post(second["resume_url"] + "/async", "later")
    assert status == 202
    assert body["status_url"] == f"{BASE}/approve/status/{second['execution_id']}"
    assert _settled(api, body["status_url"])["output"] == {"approved": "later"}


# -- 500 ----------------------------------------------------------------------------------------


def test_a_failed_workflow_answers_500_with_the_error(api):
    status, body = api.post(f"{BASE}/boom", {})
    assert status == 500, body
    assert DETAILED_KEYS <= set(body)
    assert body["state"] == "FAILED"
    assert body["error"]["type"] == "ValueError"
    assert "kaput" in body["error"]["message"]

    status, again = api.get(f"{BASE}/boom/status/{body['execution_id']}")
    assert status == 200
    assert again["state"] == "FAILED" and again["error"] == body["error"]


# -- 404 ----------------------------------------------------------------------------------------


def test_unknown_service_endpoint_and_execution_are_404(api):
    status, body = api.post("/services/no-such-service/order", {})
    assert status == 404
    _assert_error(body, "service_not_found")

    status, body = api.post(f"{BASE}/no_such_workflow", {})
    assert status == 404
    _assert_error(body, "endpoint_not_found")

    for call in (
        lambda: api.get(f"{BASE}/echo/status/no-such-execution"),
        lambda: api.post(f"{BASE}/approve/resume/no-such-execution", {}),
    ):
        status, body = call()
        assert status == 404, body
        _assert_error(body)


def test_an_execution_is_404_through_another_workflows_endpoint(api):
    _, ran = api.post(f"{BASE}/echo?detailed=true", 1)
    _, paused = api.post(f"{BASE}/approve", {})

    status, body = api.get(f"{BASE}/order/status/{ran['execution_id']}")
    assert status == 404, body
    _assert_error(body)
    status, body = api.post(f"{BASE}/echo/resume/{paused['execution_id']}", {"sneaky": True})
    assert status == 404, body
    _assert_error(body)

    # Untouched: still paused, and resumable through its own endpoint.
    status, body = api.get(f"{BASE}/approve/status/{paused['execution_id']}")
    assert status == 200 and body["state"] == "PAUSED"
    assert api.post(paused["resume_url"], 2) == (200, {"approved": 2})


# -- version pin --------------------------------------------------------------------------------

VERSIONED = """
from flux import ExecutionContext, workflow


@workflow.with_options(namespace="NS_HERE")
async def which(ctx: ExecutionContext):
    return "OUTPUT"
"""


def test_version_pins_an_older_version_and_a_missing_one_is_404(api, unique):
    ns = unique("pin")
    source = VERSIONED.replace("NS_HERE", ns)
    (first,) = api.register(source.replace("OUTPUT", "v1"), "which.py")
    (second,) = api.register(source.replace("OUTPUT", "v2"), "which.py")
    assert (first["version"], second["version"]) == (1, 2)
    api.service(ns, namespaces=[ns])
    base = f"/services/{ns}/which"

    assert api.post(base, {}) == (200, "v2")
    assert api.post(f"{base}?version=1", {}) == (200, "v1")
    assert api.post(f"{base}?version=2", {}) == (200, "v2")
    status, body = api.post(f"{base}/async?version=1", {})
    assert status == 202
    assert _settled(api, body["status_url"])["output"] == "v1"

    status, body = api.post(f"{base}?version=7", {})
    assert status == 404, body
    _assert_error(body)
    status, body = api.post(f"{base}?version=zero", {})
    assert status == 400, body
    _assert_error(body)


# -- 409 collision ------------------------------------------------------------------------------

COLLIDING = """
from flux import ExecutionContext, workflow


@workflow.with_options(namespace="NS_HERE")
async def process(ctx: ExecutionContext):
    return "NS_HERE"


@workflow.with_options(namespace="NS_HERE")
async def only_NS_HERE(ctx: ExecutionContext):
    return "alone"
"""


def test_a_collision_is_409_per_endpoint_until_one_side_is_excluded(api, unique):
    left, right, name = unique("left"), unique("right"), unique("combined")
    api.register(COLLIDING.replace("NS_HERE", left), "left.py")
    api.register(COLLIDING.replace("NS_HERE", right), "right.py")
    created = api.service(name, namespaces=[left, right])
    assert [c["name"] for c in created["collisions"]] == ["process"]

    status, body = api.post(f"/services/{name}/process", {})
    assert status == 409, body
    _assert_error(body, "name_collision")
    assert sorted(body["namespaces"]) == sorted([left, right])
    # The service's other endpoints keep working.
    assert api.post(f"/services/{name}/only_{left}", {}) == (200, "alone")
    assert api.post(f"/services/{name}/only_{right}", {}) == (200, "alone")

    status, shown = api.get(f"/services/{name}")
    assert status == 200
    (collision,) = shown["collisions"]
    assert collision["name"] == "process"
    assert sorted(collision["namespaces"]) == sorted([left, right])
    assert sorted(collision["refs"]) == sorted([f"{left}/process", f"{right}/process"])
    assert "process" not in [endpoint["name"] for endpoint in shown["endpoints"]]

    status, updated = api.put(f"/services/{name}", {"add_exclusions": [f"{right}/process"]})
    assert status == 200, updated
    assert updated["collisions"] == []
    assert api.post(f"/services/{name}/process", {}) == (200, left)


# -- 400, 413, 422 ------------------------------------------------------------------------------


def test_malformed_json_and_an_unknown_mode_are_400(api):
    for raw in (b"{nope", b'{"customer_id": "C1",}', b"\xff\xfe"):
        status, body = api.post(f"{BASE}/order", raw=raw)
        assert status == 400, (raw, body)
        _assert_error(body)
    status, body = api.post(f"{BASE}/echo/sideways", {})
    assert status == 400, body
    _assert_error(body)
    status, body = api.post(f"{BASE}/echo?detailed=maybe", {})
    assert status == 400, body


def test_a_body_over_one_mebibyte_is_413(api):
    too_big = b'{"customer_id": "' + b"x" * (1 << 20) + b'", "amount": 1}'
    status, body = api.post(f"{BASE}/order", raw=too_big)
    assert status == 413, body
    _assert_error(body, "payload_too_large")
    # Just under the limit is accepted.
    fits = b'{"customer_id": "' + b"x" * ((1 << 20) - 100) + b'", "amount": 1}'
    status, body = api.post(f"{BASE}/order?detailed=true", raw=fits)
    assert status == 200 and body["output"]["total"] == 2.0


def test_wrong_types_are_422_with_field_level_errors(api):
    status, body = api.post(f"{BASE}/order", {"customer_id": "C1", "amount": "lots"})
    assert status == 422, body
    _assert_error(body)
    assert body["errors"]
    for error in body["errors"]:
        assert {"loc", "msg", "type"} <= set(error)
    assert any("amount" in map(str, error["loc"]) for error in body["errors"])

    status, body = api.post(f"{BASE}/order", {"customer_id": "C1"})
    assert status == 422, body
    assert any("amount" in map(str, error["loc"]) for error in body["errors"])

    for not_an_object in (b'[{"customer_id": "C1", "amount": 1}]', b'"C1"', b"3", b"null"):
        status, body = api.post(f"{BASE}/order", raw=not_an_object)
        assert status == 422, (not_an_object, body)
        assert body["errors"]


def test_async_and_stream_validate_the_input_before_starting(api):
    # A 422 comes before any execution exists, so no mode hands out an execution id.
    for mode in ("async", "stream"):
        status, body = api.post(f"{BASE}/order/{mode}", {"amount": "x"})
        assert status == 422, (mode, body)
        assert body["errors"] and "execution_id" not in body


# -- odd paths ----------------------------------------------------------------------------------

ODD_PATHS = [
    "/services/..",
    "/services/../runs/echo",
    f"{BASE}/..",
    f"{BASE}/%2e%2e",
    f"{BASE}/%2E%2E/status/x",
    "/services/%2e%2e/echo",
    f"{BASE}/echo/%2e%2e",
    f"{BASE}/echo/status/..",
    f"{BASE}/echo/status/%2e%2e",
    f"{BASE}/echo/resume/%2e%2e%2f%2e%2e",
    "/services/" + "s" * 4000 + "/echo",
    f"{BASE}/" + "w" * 4000,
    f"{BASE}/echo/status/" + "e" * 4000,
    "/services/%C3%A9t%C3%A9/echo",
    f"{BASE}/caf%C3%A9",
    f"{BASE}/%F0%9F%92%A5/async",
    f"{BASE}/%ff%fe",
    f"{BASE}/echo/status/%00",
    f"{BASE}/echo/status/%C3%A9",
    "/services/RUNS/echo",
    "/workflows/%2e%2e/echo",
    "/workflows/" + "n" * 4000 + "/echo",
    f"/workflows/{SERVICE}/%C3%A9/run",
    f"/workflows/{SERVICE}/echo/status/%2e%2e",
]


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_odd_path_segments_never_answer_500(flux_server, method):
    for path in ODD_PATHS:
        connection = http.client.HTTPConnection("127.0.0.1", flux_server.port, timeout=15)
        try:
            # http.client sends the path exactly as given: no normalisation on our side.
            connection.request(
                method, path, body=b"{}", headers={"Content-Type": "application/json"}
            )
            answer = connection.getresponse()
            status, ctype = answer.status, answer.getheader("Content-Type", "")
            answer.read()
        finally:
            connection.close()
        assert status < 500, (method, path, status)
        if status >= 400:
            assert ctype.startswith("application/json"), (method, path, status, ctype)
    # The server is still fine after all that.
    assert processes.http("GET", flux_server.url + "/health")[0] == 200


RAW_REQUEST_LINES = [
    b"POST /services/" + b"x" * 10_000 + b"/echo",  # past aiohttp's request-line limit
    "POST /services/été/💥".encode(),  # raw UTF-8, not percent-encoded
    b"GET /services/\xff\xfe",
    b"POST /services/runs/echo/../../runs/echo",
]


@pytest.mark.parametrize("line", RAW_REQUEST_LINES, ids=range(len(RAW_REQUEST_LINES)))
def test_raw_request_lines_never_answer_500(flux_server, line):
    request = line + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    with socket.create_connection(("127.0.0.1", flux_server.port), timeout=10) as sock:
        sock.sendall(request)
        head = b""
        for _ in range(100):
            chunk = sock.recv(4096)
            head += chunk
            if not chunk or b"\r\n" in head:
                break
    status = int(head.split(b" ", 2)[1])
    assert 200 <= status < 500, (line[:80], head[:200])


# -- Flux-Execution-Id, Prefer: wait, max_sync_wait (SPEC §8) -----------------------------

CONTROL = """
import asyncio

from flux import ExecutionContext, pause, task, workflow


@task
async def snooze(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@workflow.with_options(namespace="control")
async def sleepy(ctx: ExecutionContext):
    await snooze(3)
    return "awake"


@workflow.with_options(namespace="control")
async def held(ctx: ExecutionContext):
    return {"answer": await pause("go")}


@workflow.with_options(namespace="control")
async def then_sleepy(ctx: ExecutionContext):
    await pause("go")
    await snooze(3)
    return "awake"


@workflow.with_options(namespace="control")
async def quick(ctx: ExecutionContext):
    return "done"
"""
CONTROL_BASE = "/services/control"


@pytest.fixture(scope="module")
def control(api):
    api.register(CONTROL, "control.py")
    api.service("control", namespaces=["control"])
    return api


def test_every_run_and_resume_answer_carries_the_execution_id(control):
    url = control.url
    for path, expected in (("/quick", 200), ("/quick/async", 202), ("/held", 202)):
        status, body, headers = processes.exchange("POST", f"{url}{CONTROL_BASE}{path}", {})
        assert status == expected, body
        if isinstance(body, dict):
            assert headers["Flux-Execution-Id"] == body["execution_id"]
        assert headers["Flux-Execution-Id"]
    held = body
    status, body, headers = processes.exchange("POST", url + held["resume_url"], {"x": 1})
    assert status == 200 and headers["Flux-Execution-Id"] == held["execution_id"]
    # By ref too, and a raw (not detailed) sync answer still names its execution.
    status, body, headers = processes.exchange(
        "POST", f"{url}/workflows/control/quick/run?detailed=true", {}
    )
    assert status == 200 and headers["Flux-Execution-Id"] == body["execution_id"]


def test_prefer_wait_bounds_a_sync_run_and_the_execution_goes_on(control):
    started = time.monotonic()
    status, body, headers = processes.exchange(
        "POST", f"{control.url}{CONTROL_BASE}/sleepy", {}, headers={"Prefer": "x, wait=1"}
    )
    assert time.monotonic() - started < 2.5
    assert status == 202 and body["state"] in ("CREATED", "RUNNING"), body
    assert body["status_url"] == f"{CONTROL_BASE}/sleepy/status/{body['execution_id']}"
    assert headers["Preference-Applied"] == "wait=1"
    assert headers["Flux-Execution-Id"] == body["execution_id"]
    assert _settled(control, body["status_url"])["state"] == "COMPLETED"


def test_a_bad_prefer_wait_is_ignored_and_a_quick_run_answers_at_once(control):
    status, body, headers = processes.exchange(
        "POST", f"{control.url}{CONTROL_BASE}/quick", {}, headers={"Prefer": "wait=soon"}
    )
    assert (status, body) == (200, "done") and "Preference-Applied" not in headers
    status, body, headers = processes.exchange(
        "POST", f"{control.url}{CONTROL_BASE}/quick", {}, headers={"Prefer": "wait=5"}
    )
    assert (status, body) == (200, "done") and headers["Preference-Applied"] == "wait=5"


def test_max_sync_wait_bounds_a_plain_sync_call(tmp_path):
    server = processes.start_server(tmp_path, env={"FLUX_MAX_SYNC_WAIT": "1"})
    try:
        assert processes.register_source(server.url, CONTROL, "control.py")[0] == 201
        status, _ = processes.http(
            "POST", f"{server.url}/services", {"name": "control", "namespaces": ["control"]}
        )
        assert status == 201
        started = time.monotonic()
        status, body, headers = processes.exchange("POST", f"{server.url}{CONTROL_BASE}/sleepy", {})
        assert time.monotonic() - started < 2.5
        assert status == 202 and body["status_url"] and "Preference-Applied" not in headers
        status_url = server.url + body["status_url"]
        done = processes.until(
            lambda: processes.http("GET", status_url)[1]["state"] == "COMPLETED", 15
        )
        assert done
    finally:
        server.stop()


# -- cancel ------------------------------------------------------------------------------------


def test_cancel_of_a_paused_execution_is_at_once_and_idempotent(control):
    status, held = control.post(f"{CONTROL_BASE}/held", {})
    assert status == 202 and held["state"] == "PAUSED"
    cancel = f"{CONTROL_BASE}/held/cancel/{held['execution_id']}"
    status, body, headers = processes.exchange("POST", control.url + cancel)
    assert status == 200 and body["state"] == "CANCELLED", body
    assert body["execution_id"] == held["execution_id"] == headers["Flux-Execution-Id"]
    assert control.post(cancel) == (200, body)  # cancelled again: the same answer
    assert control.get(f"{CONTROL_BASE}/held/status/{held['execution_id']}")[1] == body
    status, body = control.post(f"{CONTROL_BASE}/held/resume/{held['execution_id']}", {})
    assert status == 409


def test_cancel_of_a_running_execution_ends_its_sync_caller_cancelled(control):
    status, held = control.post(f"{CONTROL_BASE}/then_sleepy", {})
    assert status == 202 and held["state"] == "PAUSED"
    execution_id = held["execution_id"]
    with ThreadPoolExecutor(1) as pool:
        # A sync resume that waits while the workflow sleeps in a worker process.
        caller = pool.submit(
            processes.http, "POST", control.url + held["resume_url"] + "?detailed=true", {}
        )
        status_url = f"{CONTROL_BASE}/then_sleepy/status/{execution_id}"
        assert processes.until(lambda: control.get(status_url)[1]["state"] == "RUNNING", 10)
        time.sleep(0.3)  # into the sleeping task
        status, body = control.post(f"{CONTROL_BASE}/then_sleepy/cancel/{execution_id}")
        assert status == 200 and body["state"] == "CANCELLED", body
        started = time.monotonic()
        status, answered = caller.result(timeout=15)
        assert time.monotonic() - started < 2.0  # not after the 3 s nap
    assert status == 200 and answered["state"] == "CANCELLED", answered
    assert control.get(status_url)[1]["state"] == "CANCELLED"


def test_a_stream_of_a_cancelled_run_ends_with_the_cancelled_shape(control):
    connection = http.client.HTTPConnection(
        "127.0.0.1", int(control.url.rsplit(":", 1)[1]), timeout=20
    )
    try:
        connection.request("POST", "/workflows/control/sleepy/run/stream", body=b"{}")
        answer = connection.getresponse()
        execution_id = answer.getheader("Flux-Execution-Id")
        assert answer.status == 200 and execution_id
        status, body = control.post(f"/workflows/control/sleepy/cancel/{execution_id}")
        assert status == 200 and body["state"] == "CANCELLED", body
        text = answer.read().decode()
    finally:
        connection.close()
    last = [line for line in text.splitlines() if line.startswith("data:")][-1]
    assert json.loads(last[5:])["state"] == "CANCELLED"


def test_cancel_of_a_completed_execution_is_409_with_its_state(control):
    status, body = control.post(f"{CONTROL_BASE}/quick?detailed=true", {})
    assert status == 200
    status, refused = control.post(f"{CONTROL_BASE}/quick/cancel/{body['execution_id']}")
    assert status == 409 and refused["state"] == "COMPLETED", refused
    status, refused = control.post(f"{CONTROL_BASE}/held/cancel/{body['execution_id']}")
    assert status == 404  # another workflow's execution is not found through this route
