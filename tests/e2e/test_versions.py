"""Versions only grow, and a workflow with unfinished executions is not deleted from under them
(SPEC §9), against a real `flux start server`."""

from __future__ import annotations

import json
import sqlite3
import time

from tests.e2e import processes

SOURCE = """
from flux import ExecutionContext, pause, workflow


@workflow.with_options(namespace="{ns}")
async def flow(ctx: ExecutionContext):
    return {{"code": "{tag}"}}


@workflow.with_options(namespace="{ns}")
async def ask(ctx: ExecutionContext):
    answer = await pause("approval")
    return {{"code": "{tag}", "answer": answer}}
"""


def _register(api, ns: str, tag: str) -> dict[str, int]:
    return {w["name"]: w["version"] for w in api.register(SOURCE.format(ns=ns, tag=tag))}


def _versions(api, ns: str, name: str) -> list[int]:
    status, body = api.get(f"/workflows/{ns}/{name}")
    return [v["version"] for v in body["versions"]] if status == 200 else []


def _stored(server, execution_id: str) -> tuple[str, list[str]]:
    """(state, the values of its state events), read from the server's SQLite file: once its
    workflow is deleted, no endpoint shows the execution any more."""
    db = sqlite3.connect(f"file:{server.cwd / '.flux' / 'flux.db'}?mode=ro", uri=True)
    try:
        [(state,)] = db.execute("SELECT state FROM executions WHERE id = ?", (execution_id,))
        events = db.execute(
            "SELECT value FROM execution_events WHERE execution_id = ? AND kind = 'state' "
            "ORDER BY seq",
            (execution_id,),
        ).fetchall()
    finally:
        db.close()
    return state, [json.loads(value) for (value,) in events]


def test_a_deleted_workflow_registered_again_gets_a_new_number(api, unique):
    ns = unique("ver")
    api.service(ns, namespaces=[ns])
    assert _register(api, ns, "one")["flow"] == 1
    assert _register(api, ns, "two")["flow"] == 2
    assert api.delete(f"/workflows/{ns}/flow") == (200, {"deleted": 2})

    assert _register(api, ns, "three")["flow"] == 3
    assert _versions(api, ns, "flow") == [3]
    # A client pinned to v2 is told it is gone rather than running other code.
    status, body = api.post(f"/services/{ns}/flow?version=2", {})
    assert status == 404, body
    assert api.post(f"/services/{ns}/flow?version=3", {}) == (200, {"code": "three"})


def test_a_workflow_with_a_paused_execution_is_not_deleted(api, unique):
    ns = unique("ver")
    api.service(ns, namespaces=[ns])
    _register(api, ns, "old")
    status, paused = api.post(f"/services/{ns}/ask", {})
    assert status == 202 and paused["state"] == "PAUSED", paused

    status, body = api.delete(f"/workflows/{ns}/ask")
    assert status == 409, body
    assert body["error"] == "workflow_in_use" and body["count"] == 1
    status, body = api.delete(f"/workflows/{ns}/ask?version=1")
    assert status == 409 and body["count"] == 1
    assert _versions(api, ns, "ask") == [1]

    # Another workflow of the module, with nothing unfinished, is deleted as before.
    assert api.delete(f"/workflows/{ns}/flow") == (200, {"deleted": 1})
    # The paused execution resumes on the code it started with.
    status, done = api.post(paused["resume_url"], "yes")
    assert (status, done) == (200, {"code": "old", "answer": "yes"})
    assert api.delete(f"/workflows/{ns}/ask") == (200, {"deleted": 1})


def test_force_cancels_the_unfinished_executions_then_deletes(api, flux_server, unique):
    ns = unique("ver")
    api.service(ns, namespaces=[ns])
    _register(api, ns, "old")
    ids = []
    for _ in range(2):
        status, paused = api.post(f"/services/{ns}/ask", {})
        assert status == 202, paused
        ids.append(paused["execution_id"])

    assert api.delete(f"/workflows/{ns}/ask?force=true") == (200, {"deleted": 1})
    assert _versions(api, ns, "ask") == []
    for execution_id in ids:
        state, states = _stored(flux_server, execution_id)
        assert state == "CANCELLED" and states[-1] == "CANCELLED"

    # The resume that used to answer 500 and mark the execution FAILED: refused, nothing changed.
    status, body = api.post(f"/services/{ns}/ask/resume/{ids[0]}", "late")
    assert status in (404, 409), body
    assert _stored(flux_server, ids[0])[0] == "CANCELLED"

    # Registered again, it is v2: the cancelled executions of v1 never meet its code.
    assert _register(api, ns, "new")["ask"] == 2


def test_deleting_one_version_counts_only_that_version(api, unique):
    ns = unique("ver")
    api.service(ns, namespaces=[ns])
    _register(api, ns, "old")
    status, paused = api.post(f"/services/{ns}/ask?version=1", {})
    assert status == 202, paused
    _register(api, ns, "new")  # v2 of both
    assert api.delete(f"/workflows/{ns}/ask?version=2") == (200, {"deleted": 1})
    status, body = api.delete(f"/workflows/{ns}/ask?version=1")
    assert status == 409 and body["count"] == 1
    assert api.post(paused["resume_url"], "ok")[0] == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status, body = api.delete(f"/workflows/{ns}/ask?version=1")
        if status != 409:
            break
        time.sleep(0.1)
    assert (status, body) == (200, {"deleted": 1})


def test_versions_grow_across_a_restart(tmp_path):
    server = processes.start_server(tmp_path)
    try:
        api = processes.http
        body = processes.register_source(server.url, SOURCE.format(ns="keep", tag="a"), "k.py")[1]
        assert {w["version"] for w in body["workflows"]} == {1}
        assert api("DELETE", f"{server.url}/workflows/keep/flow")[0] == 200
        server.stop()
        server = processes.start_server(tmp_path, port=server.port)
        body = processes.register_source(server.url, SOURCE.format(ns="keep", tag="b"), "k.py")[1]
        assert {w["name"]: w["version"] for w in body["workflows"]} == {"flow": 2, "ask": 2}
    finally:
        server.stop()
