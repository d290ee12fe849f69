"""Reattachable streams on real servers: every stream event has its log seq as `id:`, and
`GET .../events/{execution_id}` replays an execution's log (after `Last-Event-ID`) and follows
it live. Run against each executor: the server's local worker processes (the default), the
in-process runtime (`--isolation none`), and `--executor workers` on PostgreSQL with a
`flux start worker` (skipped without FLUX_TEST_POSTGRES_DSN)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import processes
from tests.e2e.conftest import Api
from tests.e2e.sse import Event, open_stream, read_all, read_events
from tests.e2e.test_replicas import Worker, _postgres_url

SOURCE = """
import asyncio
import os

from flux import ExecutionContext, pause, task, workflow

NS = "reattach"


def _line(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (text + "\\n").encode())
    finally:
        os.close(fd)


@task
async def step(effects: str, execution_id: str, n: int, seconds: float) -> int:
    _line(effects, f"{execution_id} {n}")
    await asyncio.sleep(seconds)
    return n


@workflow.with_options(namespace=NS)
async def steps(ctx: ExecutionContext):
    data = ctx.input
    done = [
        await step(data["effects"], ctx.execution_id, n, data["seconds"])
        for n in range(data["n"])
    ]
    return {"done": done}


@workflow.with_options(namespace=NS)
async def gate(ctx: ExecutionContext):
    first = await step(ctx.input["effects"], ctx.execution_id, 0, 0)
    answer = await pause("gate", output={"asked": first})
    return {"answer": answer}
"""

BASE = "/services/reattach"
TIMEOUT = 30.0


class Setup:
    def __init__(self, name: str, server: processes.FluxProcess, cwd: Path) -> None:
        self.name = name
        self.server = server
        self.api = Api(server.url)
        self.url = server.url
        self.effects = cwd / "effects.log"

    def body(self, n: int = 3, seconds: float = 0.0) -> dict[str, Any]:
        return {"effects": str(self.effects), "n": n, "seconds": seconds}

    def effect_lines(self, execution_id: str) -> list[str]:
        if not self.effects.exists():
            return []
        lines = self.effects.read_text().splitlines()
        return [line.split()[1] for line in lines if line.split()[0] == execution_id]


def _server(name: str, cwd: Path, database_url: str | None) -> processes.FluxProcess:
    port = processes.free_port()
    args = ["start", "server", "--host", "127.0.0.1", "--port", str(port)]
    if name == "none":
        args += ["--isolation", "none"]
    if database_url is not None:
        args += ["--database-url", database_url, "--executor", "workers"]
    return processes.FluxProcess(args, cwd, port).start(timeout=30)


@pytest.fixture(scope="module", params=["workers", "none", "postgres"])
def setup(request, tmp_path_factory) -> Iterator[Setup]:
    name = request.param
    cwd = tmp_path_factory.mktemp(f"reattach-{name}")
    urls: Iterator[str | None] = _postgres_url() if name == "postgres" else iter([None])
    for database_url in urls:
        server = _server(name, cwd, database_url)
        worker = Worker(cwd, database_url, "worker") if database_url is not None else None
        try:
            found = Setup(name, server, cwd)
            found.api.register(SOURCE, "reattach.py")
            found.api.service("reattach", namespaces=["reattach"])
            yield found
        except BaseException:
            print(server.log())
            raise
        finally:
            if worker is not None:
                worker.stop()
            server.stop()


def _start(setup: Setup, workflow: str, body: Any) -> str:
    status, answer = setup.api.post(f"{BASE}/{workflow}/async", body)
    assert status == 202, answer
    return answer["execution_id"]


def _settled(setup: Setup, workflow: str, execution_id: str, states: set[str]) -> dict:
    def look() -> dict | None:
        _, body = setup.api.get(f"{BASE}/{workflow}/status/{execution_id}")
        return body if body["state"] in states else None

    found = processes.until(look, TIMEOUT)
    assert found, f"{execution_id} never reached {states}"
    return found


def _events_url(setup: Setup, workflow: str, execution_id: str) -> str:
    return f"{setup.url}{BASE}/{workflow}/events/{execution_id}"


def _durable(events: list[Event]) -> list[Event]:
    """What the log holds of a live stream: not task starts, nor the creation state (id 0)."""
    return [e for e in events if e.kind != "task_started" and e.id != 0]


def _ids_increase(events: list[Event]) -> None:
    ids = [e.id for e in events]
    assert all(isinstance(i, int) for i in ids), ids
    assert ids == sorted(set(ids)), ids  # type: ignore[type-var]


def test_every_stream_event_has_its_log_seq_as_id_and_ids_increase(setup):
    stream = open_stream(f"{setup.url}{BASE}/steps/stream", "POST", setup.body(n=3))
    try:
        assert stream.status == 200 and stream.header("Flux-Execution-Id")
        events = read_events(stream)
    finally:
        stream.close()
    _ids_increase(events)
    assert events[0] == Event(0, "state", events[0].data)
    assert events[0].data["state"] == "CREATED"
    assert events[-1].kind == "state" and events[-1].data["state"] == "COMPLETED"
    assert [e.data["key"] for e in events if e.kind == "task_completed"] == [
        "step#0",
        "step#1",
        "step#2",
    ]
    # The same seqs are what the log replay hands out.
    _, replay = read_all(_events_url(setup, "steps", stream.header("Flux-Execution-Id") or ""))
    assert replay == _durable(events)


def test_a_cut_stream_reattached_with_last_event_id_misses_and_repeats_nothing(setup):
    stream = open_stream(f"{setup.url}{BASE}/steps/stream", "POST", setup.body(n=4, seconds=0.4))
    execution_id = stream.header("Flux-Execution-Id")
    assert execution_id
    try:
        first = read_events(stream, until=lambda e: e.kind == "task_completed")
    finally:
        stream.close()  # the caller goes away mid-run
    assert first[-1].kind == "task_completed" and first[-1].data["key"] == "step#0"
    seen = first[-1].id

    reattached, rest = read_all(
        _events_url(setup, "steps", execution_id), headers={"Last-Event-ID": str(seen)}
    )
    assert reattached.status == 200
    assert reattached.header("Content-Type") == "text/event-stream"
    assert reattached.header("Flux-Execution-Id") == execution_id
    assert rest and all(e.id > seen for e in rest)  # type: ignore[operator]
    assert rest[-1].kind == "state" and rest[-1].data["state"] == "COMPLETED"
    assert rest[-1].data["output"] == {"done": [0, 1, 2, 3]}
    _ids_increase(rest)

    _, whole = read_all(_events_url(setup, "steps", execution_id))
    assert _durable(first) + _durable(rest) == whole
    # One execution ran, each step once: the cut started nothing and stopped nothing.
    assert Counter(setup.effect_lines(execution_id)) == Counter(["0", "1", "2", "3"])


def test_a_running_execution_is_followed_live_from_the_start(setup):
    execution_id = _start(setup, "steps", setup.body(n=3, seconds=0.3))
    _, events = read_all(_events_url(setup, "steps", execution_id))
    _ids_increase(events)
    assert events[-1].data["state"] == "COMPLETED"
    _, whole = read_all(_events_url(setup, "steps", execution_id))
    assert _durable(events) == whole
    assert [e.data["state"] for e in whole if e.kind == "state"] == ["RUNNING", "COMPLETED"]


def test_a_finished_execution_answers_its_remaining_events_and_ends(setup):
    status, done = setup.api.post(f"{BASE}/steps?detailed=true", setup.body(n=2))
    assert status == 200 and done["state"] == "COMPLETED"
    url = _events_url(setup, "steps", done["execution_id"])
    _, whole = read_all(url)
    _ids_increase(whole)
    assert whole[-1] == Event(whole[-1].id, "state", done)
    _, from_zero = read_all(url, headers={"Last-Event-ID": "0"})
    assert from_zero == whole
    _, tail = read_all(url, headers={"Last-Event-ID": str(whole[1].id)})
    assert tail == whole[2:]
    stream, nothing = read_all(url, headers={"Last-Event-ID": str(whole[-1].id)})
    assert stream.status == 200 and nothing == []


def test_a_paused_execution_streams_up_to_its_pause_and_on_after_the_resume(setup):
    execution_id = _start(setup, "gate", setup.body())
    _settled(setup, "gate", execution_id, {"PAUSED"})
    url = _events_url(setup, "gate", execution_id)
    _, paused = read_all(url)
    assert [e.kind for e in paused][-2:] == ["paused", "state"]
    assert paused[-1].data["state"] == "PAUSED"
    assert paused[-1].data["output"] == {"asked": 0}
    assert paused[-1].data["resume_url"] == f"{BASE}/gate/resume/{execution_id}"

    status, _ = setup.api.post(f"{BASE}/gate/resume/{execution_id}/async", "yes")
    assert status == 202
    _, after = read_all(url, headers={"Last-Event-ID": str(paused[-1].id)})
    assert after[0].kind == "resumed" and after[0].data["value"] == "yes"
    assert after[-1].data["state"] == "COMPLETED"
    assert after[-1].data["output"] == {"answer": "yes"}
    _, whole = read_all(url)
    assert paused + after == whole


def test_the_by_ref_route_streams_the_same(setup):
    status, done = setup.api.post(f"{BASE}/steps?detailed=true", setup.body(n=1))
    assert status == 200
    execution_id = done["execution_id"]
    _, by_service = read_all(_events_url(setup, "steps", execution_id))
    _, by_ref = read_all(f"{setup.url}/workflows/reattach/steps/events/{execution_id}")
    assert [(e.id, e.kind) for e in by_ref] == [(e.id, e.kind) for e in by_service]


def test_unknown_foreign_and_malformed_requests_are_clear_json_errors(setup):
    status, body = setup.api.get(f"{BASE}/steps/events/nope")
    assert status == 404 and body["error"] == "execution_not_found", body
    gate = _start(setup, "gate", setup.body())
    status, body = setup.api.get(f"{BASE}/steps/events/{gate}")  # another workflow's execution
    assert status == 404 and body["error"] == "execution_not_found", body
    status, body = setup.api.get(f"{BASE}/nothere/events/{gate}")
    assert status == 404, body
    for bad in ("abc", "-1", "1.5", "1e3", "99999999999999999999", "0x10"):
        status, body = setup.api.get(f"{BASE}/gate/events/{gate}", headers={"Last-Event-ID": bad})
        assert status == 400 and body["error"] == "invalid_request", (bad, body)
        assert "Last-Event-ID" in body["message"]


def test_through_the_standalone_process(setup, tmp_path):
    if setup.name != "workers":
        pytest.skip("the standalone process relays the same route whatever the executor")
    standalone = processes.start_standalone(tmp_path, "reattach", setup.url)
    try:
        status, started = processes.http(
            "POST", f"{standalone.url}/steps/async", setup.body(n=3, seconds=0.2)
        )
        assert status == 202, started
        execution_id = started["execution_id"]
        _, live = read_all(f"{standalone.url}/steps/events/{execution_id}")
        _ids_increase(live)
        assert live[-1].data["state"] == "COMPLETED"
        _, direct = read_all(_events_url(setup, "steps", execution_id))
        assert _durable(live) == direct
        relayed, tail = read_all(
            f"{standalone.url}/steps/events/{execution_id}",
            headers={"Last-Event-ID": str(direct[0].id)},
        )
        assert relayed.header("Flux-Execution-Id") == execution_id
        assert tail == direct[1:]
        status, body = processes.http(
            "GET", f"{standalone.url}/steps/events/{execution_id}", headers={"Last-Event-ID": "x"}
        )
        assert status == 400 and body["error"] == "invalid_request"
    finally:
        standalone.stop()
