"""Stream mode (`text/event-stream`) of service endpoints on a real server."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any

import pytest

from tests.e2e import processes

STEPS = """
import asyncio

from flux import ExecutionContext, pause, task, workflow

NS = "streams"


@task
async def step(n: int, seconds: float) -> int:
    await asyncio.sleep(seconds)
    return n


@workflow.with_options(namespace=NS)
async def steps(ctx: ExecutionContext):
    seconds = (ctx.input or {}).get("seconds", 0)
    done = [await step(n, seconds) for n in (1, 2, 3)]
    return {"done": done}


@workflow.with_options(namespace=NS)
async def gate(ctx: ExecutionContext):
    first = await step(1, 0)
    answer = await pause("gate")
    return {"first": first, "answer": answer}


@workflow.with_options(namespace=NS)
async def broken(ctx: ExecutionContext):
    await step(1, 0)
    raise RuntimeError("stream failure")
"""

BASE = "/services/streams"
DETAILED_KEYS = {"execution_id", "state", "output", "namespace", "workflow"}


@pytest.fixture(scope="module", autouse=True)
def streams_service(api):
    api.register(STEPS, "streams.py")
    api.service("streams", namespaces=["streams"])


def _open_stream(port: int, path: str, body: Any) -> tuple[http.client.HTTPConnection, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    connection.request(
        "POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    return connection, connection.getresponse()


def _events(answer: Any, limit: int = 500) -> list[tuple[str, Any]]:
    """(event, data) pairs until the stream ends; bounded in count and by the socket timeout."""
    events: list[tuple[str, Any]] = []
    kind = None
    for _ in range(limit * 3):
        line = answer.readline()
        if not line:
            break
        text = line.decode().rstrip("\r\n")
        if text.startswith("event:"):
            kind = text[len("event:") :].strip()
        elif text.startswith("data:"):
            events.append((kind, json.loads(text[len("data:") :])))
            kind = None
    return events


def _index(events: list[tuple[str, Any]], kind: str, key: str) -> int:
    return next(i for i, (k, data) in enumerate(events) if k == kind and data["key"] == key)


def _stream(port: int, path: str, body: Any) -> list[tuple[str, Any]]:
    connection, answer = _open_stream(port, path, body)
    try:
        assert answer.status == 200
        assert answer.getheader("Content-Type", "").startswith("text/event-stream")
        return _events(answer)
    finally:
        connection.close()


def test_stream_sends_events_in_order_and_ends_with_the_final_state(flux_server):
    events = _stream(flux_server.port, f"{BASE}/steps/stream", {"seconds": 0.05})
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "state"
    assert kinds[-1] == "state"

    final = events[-1][1]
    assert set(final) == DETAILED_KEYS
    assert final["state"] == "COMPLETED" and final["output"] == {"done": [1, 2, 3]}
    assert (final["namespace"], final["workflow"]) == ("streams", "steps")
    assert all(data["execution_id"] == final["execution_id"] for _, data in events)

    # Each task starts before it completes, and they complete in the order they ran.
    started = [data["key"] for kind, data in events if kind == "task_started"]
    completed = [(data["key"], data["value"]) for kind, data in events if kind == "task_completed"]
    assert [value for _, value in completed] == [1, 2, 3]
    assert started == [key for key, _ in completed]
    for key, _ in completed:
        start_at = _index(events, "task_started", key)
        assert start_at < _index(events, "task_completed", key)

    # State events only move forward.
    order = ["CREATED", "RUNNING", "COMPLETED"]
    states = [data["state"] for kind, data in events if kind == "state"]
    assert states == sorted(states, key=order.index)
    assert "RUNNING" in states


def test_stream_of_a_pause_ends_paused_and_a_streamed_resume_completes(flux_server):
    events = _stream(flux_server.port, f"{BASE}/gate/stream", {})
    kind, final = events[-1]
    assert kind == "state" and final["state"] == "PAUSED"
    execution_id = final["execution_id"]
    assert final["resume_url"] == f"{BASE}/gate/resume/{execution_id}"
    assert "paused" in [kind for kind, _ in events]

    events = _stream(flux_server.port, f"{final['resume_url']}/stream", {"go": True})
    kinds = [kind for kind, _ in events]
    assert "resumed" in kinds
    kind, final = events[-1]
    assert kind == "state" and final["state"] == "COMPLETED"
    assert final["output"] == {"first": 1, "answer": {"go": True}}


def test_stream_of_a_failure_ends_failed_with_the_error(flux_server):
    events = _stream(flux_server.port, f"{BASE}/broken/stream", {})
    kind, final = events[-1]
    assert kind == "state" and final["state"] == "FAILED"
    assert final["error"]["type"] == "RuntimeError"
    assert "stream failure" in final["error"]["message"]


def test_a_client_leaving_early_does_not_cancel_the_execution(api, flux_server):
    connection, answer = _open_stream(flux_server.port, f"{BASE}/steps/stream", {"seconds": 0.4})
    try:
        assert answer.status == 200
        execution_id = None
        for _ in range(20):
            line = answer.readline().decode()
            if line.startswith("data:"):
                execution_id = json.loads(line[5:])["execution_id"]
                break
        assert execution_id
    finally:
        # Gone after the first event, long before the three 0.4 s tasks are done.
        answer.close()
        connection.close()
    left_at = time.monotonic()

    def completed():
        status, body = api.get(f"{BASE}/steps/status/{execution_id}")
        assert status == 200, body
        assert body["state"] in ("CREATED", "RUNNING", "COMPLETED"), body
        return body if body["state"] == "COMPLETED" else None

    body = processes.until(completed, 15)
    assert body, "the execution did not complete after the client left"
    assert body["output"] == {"done": [1, 2, 3]}
    assert time.monotonic() - left_at > 0.5  # it really was still running when we left


def test_a_stream_names_its_execution_in_the_headers_before_the_first_event(flux_server):
    connection, answer = _open_stream(flux_server.port, f"{BASE}/gate/stream", {})
    try:
        execution_id = answer.getheader("Flux-Execution-Id")
        assert answer.status == 200 and execution_id
        events = _events(answer)
        assert events[0][1]["execution_id"] == execution_id
    finally:
        connection.close()
