"""Crash safety: SIGKILL the server (by its PID) and restart it on the same database and port."""

from __future__ import annotations

from tests.e2e import processes

SOURCE = """
import asyncio

from flux import ExecutionContext, pause, task, workflow


@task
async def add(a: int, b: int) -> int:
    return a + b


@task
async def nap(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@workflow.with_options(namespace="durable")
async def total(ctx: ExecutionContext):
    return {"sum": await add(ctx.input["a"], ctx.input["b"])}


@workflow.with_options(namespace="durable")
async def approval(ctx: ExecutionContext):
    before = await add(1, 1)
    answer = await pause("approval")
    return {"before": before, "answer": answer}


@workflow.with_options(namespace="durable")
async def lengthy(ctx: ExecutionContext):
    await nap(3)
    return "finished"
"""

BASE = "/services/durable"


def test_a_killed_server_keeps_completed_and_paused_executions(tmp_path):
    server = processes.start_server(tmp_path)
    try:
        api = processes.http
        assert processes.register_source(server.url, SOURCE, "durable.py")[0] == 201
        status, _ = api(
            "POST", server.url + "/services", {"name": "durable", "namespaces": ["durable"]}
        )
        assert status == 201

        status, done = api("POST", f"{server.url}{BASE}/total?detailed=true", {"a": 2, "b": 3})
        assert status == 200 and done["state"] == "COMPLETED"
        status, paused = api("POST", f"{server.url}{BASE}/approval", {})
        assert status == 202 and paused["state"] == "PAUSED"
        status, running = api("POST", f"{server.url}{BASE}/lengthy/async", {})
        assert status == 202

        pid = server.proc.pid
        server.kill()
        assert server.proc.poll() is not None
        # Restart on the same working directory (hence the same .flux database) and port.
        restarted = processes.start_server(tmp_path, port=server.port)
        assert restarted.proc.pid != pid
    except BaseException:
        server.kill()
        raise

    try:
        url = restarted.url
        status, body = api("GET", f"{url}{BASE}/total/status/{done['execution_id']}")
        assert status == 200, body
        assert body["state"] == "COMPLETED" and body["output"] == {"sum": 5}

        status, body = api("GET", f"{url}{BASE}/approval/status/{paused['execution_id']}")
        assert status == 200, body
        assert body["state"] == "PAUSED" and body["resume_url"] == paused["resume_url"]
        assert api("POST", url + paused["resume_url"], {"ok": True}) == (
            200,
            {"before": 2, "answer": {"ok": True}},
        )
        status, body = api("GET", f"{url}{BASE}/approval/status/{paused['execution_id']}")
        assert body["state"] == "COMPLETED"

        # The one running at the kill is not forgotten: it finishes (or fails) after recovery.
        def settled():
            status, body = api("GET", url + running["status_url"])
            assert status == 200, body
            return body if body["state"] in ("COMPLETED", "FAILED") else None

        body = processes.until(settled, 20, step=0.2)
        assert body, "the execution running at the kill never settled"
        if body["state"] == "COMPLETED":
            assert body["output"] == "finished"

        # The service and the catalog survived as well.
        assert api("POST", f"{url}{BASE}/total", {"a": 1, "b": 1}) == (200, {"sum": 2})
    finally:
        restarted.stop()
