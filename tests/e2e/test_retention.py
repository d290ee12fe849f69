"""Retention end to end, with real `flux start server` processes: `flux execution purge` by
hand, the background purge of executions past `retention_days` (made old by rewriting their
rows in the SQLite file while no server runs), and the admin permission of the purge route."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e import processes

WORKFLOWS = """
from flux import ExecutionContext, pause, workflow


@workflow.with_options(namespace="kept")
async def echo(ctx: ExecutionContext):
    return {"got": ctx.input}


@workflow.with_options(namespace="kept")
async def boom(ctx: ExecutionContext):
    raise ValueError("kaput")


@workflow.with_options(namespace="kept")
async def approve(ctx: ExecutionContext):
    return {"approved": await pause("approval")}
"""
BASE = "/services/kept"
DAY = 86_400
FIRST_RUN_WAIT = 15.0  # the background purge runs 3 s after start; slack for a busy machine


def flux(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        processes.flux_command(*args),
        cwd=cwd,
        env=processes.child_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def prepare(url: str, headers: dict[str, str] | None = None) -> None:
    status, body = processes.http(
        "POST",
        f"{url}/workflows?filename=kept.py",
        raw=WORKFLOWS.encode(),
        headers={"Content-Type": "text/x-python", **(headers or {})},
    )
    assert status == 201, body
    status, body = processes.http(
        "POST", f"{url}/services", {"name": "kept", "namespaces": ["kept"]}, headers=headers
    )
    assert status == 201, body


def run(url: str, workflow: str, body: object = None) -> str:
    """Run `workflow` (sync, detailed): its execution id, once it has completed, failed or
    paused."""
    status, answer = processes.http("POST", f"{url}{BASE}/{workflow}?detailed=true", body or {})
    assert status in (200, 202, 500), answer
    return answer["execution_id"]


def state_of(url: str, workflow: str, execution_id: str) -> tuple[int, object]:
    status, body = processes.http("GET", f"{url}{BASE}/{workflow}/status/{execution_id}")
    return status, body["state"] if status == 200 else body


@pytest.fixture(scope="module")
def server(flux_server):
    prepare(flux_server.url)
    return flux_server


# -- by hand ------------------------------------------------------------------------------------


def test_purge_older_than_0s_removes_finished_executions_and_keeps_a_paused_one(server):
    done = run(server.url, "echo", {"n": 1})
    failed = run(server.url, "boom")
    paused = run(server.url, "approve")
    assert state_of(server.url, "boom", failed) == (200, "FAILED")
    assert state_of(server.url, "approve", paused) == (200, "PAUSED")
    time.sleep(0.01)  # "older than 0 s": changed before the purge's clock reads now

    purge = flux(server.cwd, "execution", "purge", "--older-than", "0s", "--server-url", server.url)

    assert purge.returncode == 0, purge.stderr
    assert re.fullmatch(r"purged \d+ execution\(s\)\n", purge.stdout), purge.stdout
    assert int(purge.stdout.split()[1]) >= 2
    assert state_of(server.url, "echo", done)[0] == 404
    assert state_of(server.url, "boom", failed)[0] == 404
    # The paused execution stays, and still resumes.
    assert state_of(server.url, "approve", paused) == (200, "PAUSED")
    status, body = processes.http("POST", f"{server.url}{BASE}/approve/resume/{paused}", "yes")
    assert (status, body) == (200, {"approved": "yes"})


def test_purge_leaves_executions_younger_than_the_duration(server):
    recent = run(server.url, "echo", {"n": 2})
    purge = flux(
        server.cwd,
        "execution",
        "purge",
        "--older-than",
        "1d",
        "--server-url",
        server.url,
        "--format",
        "json",
    )
    assert purge.returncode == 0, purge.stderr
    assert '"purged": 0' in purge.stdout, purge.stdout
    assert state_of(server.url, "echo", recent) == (200, "COMPLETED")


@pytest.mark.parametrize("duration", ["7", "7x", "-1d", "1.5 h", "d", ""])
def test_a_bad_duration_is_one_line_and_a_usage_error(server, duration):
    purge = flux(
        server.cwd, "execution", "purge", "--older-than", duration, "--server-url", server.url
    )
    assert purge.returncode == 2
    assert purge.stdout == ""
    lines = purge.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), purge.stderr
    assert "s, m, h or d" in lines[0]


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?older_than=",
        "?older_than=-1",
        "?older_than=1e3",
        "?older_than=abc",
        "?older_than=1&older_than=2",
        "?older_than=nan",
    ],
)
def test_the_purge_route_refuses_a_bad_age_with_400(server, query):
    status, body = processes.http("POST", f"{server.url}/executions/purge{query}")
    assert status == 400, body
    assert body["error"] == "invalid_request" and "older_than" in body["message"], body


def test_the_purge_route_answers_the_count(server):
    run(server.url, "echo", {"n": 3})
    time.sleep(0.01)
    status, body = processes.http("POST", f"{server.url}/executions/purge?older_than=0")
    assert status == 200, body
    assert body["purged"] >= 1 and body["complete"] is True, body
    assert processes.http("POST", f"{server.url}/executions/purge?older_than=0")[1]["purged"] == 0


def test_an_execution_a_live_idempotency_key_names_outlives_a_purge(tmp_path):
    window = 5.0  # long enough for the first half on a busy machine
    server = processes.start_server(tmp_path, env={"FLUX_IDEMPOTENCY_WINDOW": str(window)})
    try:
        prepare(server.url)
        keyed = {"Idempotency-Key": "order-7"}
        status, first = processes.http(
            "POST", f"{server.url}{BASE}/echo?detailed=true", {"n": 7}, headers=keyed
        )
        assert status == 200, first
        execution_id = first["execution_id"]
        time.sleep(0.01)
        status, body = processes.http("POST", f"{server.url}/executions/purge?older_than=0")
        assert (status, body["purged"]) == (200, 0), body
        # A retry within the window still finds the execution, and runs nothing new.
        status, again = processes.http(
            "POST", f"{server.url}{BASE}/echo?detailed=true", {"n": 7}, headers=keyed
        )
        assert (status, again["execution_id"]) == (200, execution_id), again

        time.sleep(window + 0.2)  # the key expires: the purge takes both
        status, body = processes.http("POST", f"{server.url}/executions/purge?older_than=0")
        # The key may have gone already, in a background run (they purge expired keys too).
        assert (status, body["purged"]) == (200, 1) and body["idempotency_keys"] <= 1, body
        assert state_of(server.url, "echo", execution_id)[0] == 404
    finally:
        server.stop()


# -- in the background --------------------------------------------------------------------------


def age_every_execution(cwd: Path, days: float) -> int:
    """With no server running: move every execution's times `days` into the past."""
    with sqlite3.connect(cwd / ".flux" / "flux.db") as db:
        shifted = db.execute(
            "UPDATE executions SET created_at = created_at - ?, updated_at = updated_at - ?",
            (days * DAY, days * DAY),
        ).rowcount
    return shifted


def test_the_background_purge_removes_executions_past_retention_days(tmp_path):
    first = processes.start_server(tmp_path)
    try:
        prepare(first.url)
        finished = [("echo", run(first.url, "echo", {"n": i})) for i in range(3)]
        finished.append(("boom", run(first.url, "boom")))
        paused = run(first.url, "approve")
    finally:
        first.stop()
    assert age_every_execution(tmp_path, 40) == 5

    # retention_days 0 keeps everything, however old.
    keeping = processes.start_server(tmp_path, env={"FLUX_RETENTION_DAYS": "0"})
    try:
        time.sleep(5)
        for workflow, execution_id in finished:
            assert state_of(keeping.url, workflow, execution_id)[0] == 200
    finally:
        keeping.stop()

    purging = processes.start_server(tmp_path, env={"FLUX_RETENTION_DAYS": "30"})
    try:

        def all_gone() -> bool:
            return all(state_of(purging.url, w, i)[0] == 404 for w, i in finished)

        assert processes.until(all_gone, FIRST_RUN_WAIT, step=0.2), purging.log()
        assert state_of(purging.url, "approve", paused) == (200, "PAUSED")
        assert processes.until(
            lambda: "flux.retention: purged 4 finished execution(s)" in purging.log(), 5.0
        ), purging.log()
        # Executions of today are kept.
        recent = run(purging.url, "echo", {"n": "new"})
        assert state_of(purging.url, "echo", recent) == (200, "COMPLETED")
    finally:
        purging.stop()


# -- permission ---------------------------------------------------------------------------------


def create_key(cwd: Path, name: str, *permissions: str) -> str:
    args = ["auth", "key", "create", name]
    for permission in permissions:
        args += ["--permission", permission]
    done = flux(cwd, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_only_an_admin_may_purge(tmp_path):
    (tmp_path / "flux.toml").write_text("[flux.security.auth]\nenabled = true\n")
    admin = create_key(tmp_path, "admin", "admin")
    runner = create_key(tmp_path, "runner", "workflow:kept:*")
    secured = processes.start_server(tmp_path)
    try:
        url = f"{secured.url}/executions/purge?older_than=0"
        assert processes.http("POST", url)[0] == 401
        status, body = processes.http("POST", url, headers={"Authorization": f"Bearer {runner}"})
        assert status == 403 and body["error"] == "forbidden", body
        status, body = processes.http("POST", url, headers={"Authorization": f"Bearer {admin}"})
        assert status == 200 and body["purged"] == 0, body

        refused = flux(
            tmp_path,
            "execution",
            "purge",
            "--older-than",
            "0s",
            "--server-url",
            secured.url,
            "--api-key",
            runner,
        )
        assert refused.returncode == 1 and refused.stdout == ""
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        allowed = flux(
            tmp_path,
            "execution",
            "purge",
            "--older-than",
            "0s",
            "--server-url",
            secured.url,
            "--api-key",
            admin,
        )
        assert allowed.returncode == 0 and allowed.stdout == "purged 0 execution(s)\n", allowed
    finally:
        secured.stop()
