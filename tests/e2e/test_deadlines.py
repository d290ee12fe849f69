"""Deadlines with real processes (SPEC §8 "Deadlines"): `@workflow.with_options(timeout=...)`,
`pause(..., timeout=...)` and the `execution_timeout` setting, enforced in worker processes, by
killing a worker stuck in code that never awaits, by the server's sweeper, and across a restart;
with `--isolation none` in the server process itself."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.e2e import processes
from tests.e2e.conftest import Api

SOURCE = """
import asyncio, time
from flux import ExecutionContext, pause, task, workflow


@task
async def nap(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "rested"


@workflow.with_options(namespace="dl", timeout=1)
async def sleeper(ctx: ExecutionContext):
    return await nap(30)


@workflow.with_options(namespace="dl", timeout=1)
async def spinner(ctx: ExecutionContext):
    while True:
        pass


@workflow.with_options(namespace="dl", timeout=1)
def sync_spinner(ctx: ExecutionContext):
    end = time.monotonic() + 30
    while time.monotonic() < end:
        pass
    return "too late"


@workflow.with_options(namespace="dl", timeout=2)
async def patient(ctx: ExecutionContext):
    answer = await pause("go")
    await nap(0.5)
    return {"answer": answer}


@workflow.with_options(namespace="dl")
async def waiting(ctx: ExecutionContext):
    return await pause("approve", timeout=1)


@workflow.with_options(namespace="dl")
async def default_timeout(ctx: ExecutionContext):
    return await nap(30)


@workflow.with_options(namespace="dl")
async def quick(ctx: ExecutionContext):
    return "done"


@workflow.with_options(namespace="dl")
async def steady(ctx: ExecutionContext):
    return await nap(2.5)
"""

BASE = "/workflows/dl"


def failed(body: Any, error_type: str) -> None:
    assert isinstance(body, dict), body
    assert body["state"] == "FAILED", body
    assert body["error"]["type"] == error_type, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body


def state_of(api: Api, workflow: str, execution_id: str) -> dict[str, Any]:
    status, body = api.get(f"{BASE}/{workflow}/status/{execution_id}")
    assert status == 200, body
    return body


def settled(api: Api, workflow: str, execution_id: str, timeout: float) -> dict[str, Any]:
    """The execution once it is final, or as it is after `timeout` seconds."""
    final = processes.until(
        lambda: (
            (b := state_of(api, workflow, execution_id))["state"]
            in ("COMPLETED", "FAILED", "CANCELLED")
            and b
        ),
        timeout,
    )
    return final or state_of(api, workflow, execution_id)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # execution_timeout 2 s: `default_timeout` has no timeout of its own.
    server = processes.start_server(
        tmp_path_factory.mktemp("deadlines"), env={"FLUX_EXECUTION_TIMEOUT": "2"}
    )
    try:
        Api(server.url).register(SOURCE, "deadlines.py")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api(server) -> Api:
    return Api(server.url)


def test_a_run_sleeping_in_a_task_fails_at_its_timeout_and_the_sync_caller_gets_it(api):
    started = time.monotonic()
    status, body = api.post(f"{BASE}/sleeper/run", {})
    elapsed = time.monotonic() - started
    assert status == 500, body
    failed(body, "WorkflowTimeout")
    assert 0.9 < elapsed < 4.0, f"answered after {elapsed:.1f} s"
    assert state_of(api, "sleeper", body["execution_id"]) == body


def test_a_stream_of_a_run_past_its_deadline_ends_with_the_failed_shape(api):
    status, text = processes.http("POST", f"{api.url}{BASE}/sleeper/run/stream", {})
    assert status == 200, text
    last = [line for line in text.splitlines() if line.startswith("data:")][-1]
    failed(json.loads(last[5:]), "WorkflowTimeout")


def test_a_run_that_never_yields_is_ended_and_the_server_keeps_answering(server, api):
    with ThreadPoolExecutor(1) as pool:
        caller = pool.submit(api.post, f"{BASE}/spinner/run", {})
        time.sleep(0.3)
        # Its worker's loop is held by `while True`: other calls still answer meanwhile.
        for _ in range(3):
            started = time.monotonic()
            assert api.post(f"{BASE}/quick/run", {}) == (200, "done")
            assert api.get("/health")[0] == 200
            assert time.monotonic() - started < 2.0
        status, body = caller.result(timeout=20)
    assert status == 500, body
    failed(body, "WorkflowTimeout")
    assert "past its deadline" in server.log()


def test_a_long_sync_workflow_is_failed_at_its_timeout_and_its_worker_replaced(server, api):
    kills = server.log().count("past its deadline; killing it")
    started = time.monotonic()
    status, body = api.post(f"{BASE}/sync_spinner/run", {})
    assert status == 500, body
    failed(body, "WorkflowTimeout")
    assert time.monotonic() - started < 6.0
    # Its thread could not be stopped: the worker holding it was killed for it.
    assert server.log().count("past its deadline; killing it") == kills + 1
    assert api.post(f"{BASE}/quick/run", {}) == (200, "done")


def test_time_spent_paused_does_not_count_against_the_timeout(api):
    status, held = api.post(f"{BASE}/patient/run/async", {})
    assert status == 202
    execution_id = held["execution_id"]
    assert processes.until(lambda: state_of(api, "patient", execution_id)["state"] == "PAUSED", 10)
    time.sleep(3.0)  # longer than the 2 s timeout, all of it paused
    assert state_of(api, "patient", execution_id)["state"] == "PAUSED"
    status, body = api.post(f"{BASE}/patient/resume/{execution_id}", {"ok": 1})
    assert (status, body) == (200, {"answer": {"ok": 1}})


def test_a_pause_not_resumed_in_time_fails_with_pause_timeout(api):
    status, held = api.post(f"{BASE}/waiting/run", {})
    assert status == 202 and held["state"] == "PAUSED", held
    final = settled(api, "waiting", held["execution_id"], 8)
    failed(final, "PauseTimeout")
    status, refused = api.post(f"{BASE}/waiting/resume/{held['execution_id']}", {})
    assert status == 409 and refused["state"] == "FAILED", refused


def test_execution_timeout_is_the_default_deadline(api):
    started = time.monotonic()
    status, body = api.post(f"{BASE}/default_timeout/run", {})
    assert status == 500, body
    failed(body, "WorkflowTimeout")
    assert 1.8 < time.monotonic() - started < 6.0


def test_an_invalid_timeout_is_refused_at_registration(api):
    source = SOURCE.replace('namespace="dl", timeout=1)', 'namespace="dl2", timeout=-1)', 1)
    status, body = processes.register_source(api.url, source, "bad.py")
    assert status == 400, body
    assert "timeout" in body["message"] and "positive" in body["message"], body


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_deadlines_that_pass_while_the_server_is_down_are_enforced_at_the_next_start(tmp_path, how):
    server = processes.start_server(tmp_path)
    try:
        api = Api(server.url)
        api.register(SOURCE, "deadlines.py")
        status, paused = api.post(f"{BASE}/waiting/run", {})
        assert status == 202 and paused["state"] == "PAUSED"
        status, running = api.post(f"{BASE}/default_timeout/run/async", {})
        assert status == 202
        execution_id = running["execution_id"]
        assert processes.until(
            lambda: state_of(api, "default_timeout", execution_id)["state"] == "RUNNING", 10
        )
        # The default_timeout run has 3600 s (the default) to run, the pause 1 s to wait.
        getattr(server, how)()
        time.sleep(1.5)
        server = processes.start_server(tmp_path, port=server.port)
        failed(settled(api, "waiting", paused["execution_id"], 5), "PauseTimeout")
        assert state_of(api, "default_timeout", execution_id)["state"] == "RUNNING"
    finally:
        server.stop()


def test_a_running_deadline_passed_while_down_fails_before_it_replays(tmp_path):
    server = processes.start_server(tmp_path, env={"FLUX_EXECUTION_TIMEOUT": "1"})
    try:
        api = Api(server.url)
        api.register(SOURCE, "deadlines.py")
        status, running = api.post(f"{BASE}/default_timeout/run/async", {})
        assert status == 202
        time.sleep(0.2)
        server.kill()
        time.sleep(1.5)
        server = processes.start_server(tmp_path, port=server.port)
        # Failed by the sweep at start: not replayed (its task would nap 30 s).
        final = state_of(api, "default_timeout", running["execution_id"])
        failed(final, "WorkflowTimeout")
    finally:
        server.stop()


def test_without_isolation_the_server_enforces_deadlines_itself(tmp_path):
    server = processes.start_server(tmp_path, env={"FLUX_ISOLATION": "none"})
    try:
        api = Api(server.url)
        api.register(SOURCE, "deadlines.py")
        status, body = api.post(f"{BASE}/sleeper/run", {})
        assert status == 500, body
        failed(body, "WorkflowTimeout")
        status, held = api.post(f"{BASE}/waiting/run", {})
        assert status == 202
        failed(settled(api, "waiting", held["execution_id"], 8), "PauseTimeout")
    finally:
        server.stop()


# -- replicas and `flux start worker` on PostgreSQL ------------------------------------------------


def test_replicas_on_postgres_enforce_running_and_pause_deadlines_once(tmp_path):
    from tests.e2e.test_replicas import Cluster, _postgres_url

    for database_url in _postgres_url():
        cluster = Cluster(tmp_path, database_url)
        try:
            one, two = cluster.start_server(), cluster.start_server()
            cluster.start_worker()
            one.register(SOURCE, "deadlines.py")
            # Running past its timeout in a worker: the worker fails it.
            status, body = two.post(f"{BASE}/sleeper/run", {})
            assert status == 500, body
            failed(body, "WorkflowTimeout")
            # A spinning sync workflow runs on a worker thread: failed at its deadline too.
            status, body = one.post(f"{BASE}/sync_spinner/run", {})
            assert status == 500, body
            failed(body, "WorkflowTimeout")
            # Paused past its pause's deadline: both replicas sweep, one writes.
            status, held = one.post(f"{BASE}/waiting/run", {})
            assert status == 202 and held["state"] == "PAUSED"
            final = settled(two, "waiting", held["execution_id"], 10)
            failed(final, "PauseTimeout")
            status, log = two.get(f"/executions/{held['execution_id']}")
            if status == 200 and "events" in log:  # the listing route, where it exists
                states = [e["value"] for e in log["events"] if e["type"] == "state"]
                assert states.count("FAILED") == 1, states
        finally:
            cluster.stop()


def test_the_other_runs_of_a_worker_killed_for_a_deadline_go_on_without_a_crash(tmp_path):
    server = processes.start_server(tmp_path, env={"FLUX_WORKERS": "1"})
    try:
        api = Api(server.url)
        api.register(SOURCE, "deadlines.py")
        with ThreadPoolExecutor(1) as pool:
            # Streamed, so every event of its log shows, a worker_lost one included.
            innocent = pool.submit(
                processes.http, "POST", f"{server.url}{BASE}/steady/run/stream", {}
            )
            time.sleep(0.5)
            status, body = api.post(f"{BASE}/spinner/run", {})  # the same, only worker
            assert status == 500, body
            failed(body, "WorkflowTimeout")
            status, text = innocent.result(timeout=30)
        assert status == 200
        assert "past its deadline; killing it" in server.log()
        assert "worker_lost" not in text, text
        assert '"COMPLETED"' in text and "rested" in text, text
    finally:
        server.stop()
