"""Stopping the server (SIGTERM): calls in flight get the grace period, the rest a JSON 503,
the worker processes go with it, and it is gone within its bound even when a worker spins."""

from __future__ import annotations

import threading
import time

from tests.e2e import processes

SOURCE = """
import asyncio

from flux import ExecutionContext, workflow


@workflow.with_options(namespace="stop")
async def nap(ctx: ExecutionContext):
    await asyncio.sleep(ctx.input)
    return "rested"


@workflow.with_options(namespace="stop")
async def spin(ctx: ExecutionContext):
    while True:
        pass
"""

GRACE = 2.0


def test_sigterm_finishes_short_calls_answers_long_ones_503_and_exits_in_time(tmp_path):
    server = processes.start_server(tmp_path, env={"FLUX_SHUTDOWN_GRACE": str(GRACE)})
    try:
        status, body = processes.register_source(server.url, SOURCE, "stop.py")
        assert status == 201, body
        assert (
            processes.http(
                "POST", f"{server.url}/services", {"name": "stop", "namespaces": ["stop"]}
            )[0]
            == 201
        )
        spinning = processes.http("POST", f"{server.url}/services/stop/spin/async", {})
        assert spinning[0] == 202
        workers = processes.until(lambda: processes.children_of(server.proc.pid), timeout=10)
        time.sleep(1.5)  # the spinning worker has missed a renewal: it gets no new work
        answers: dict[str, tuple[int, object]] = {}

        def call(name: str, seconds: float) -> None:
            answers[name] = processes.http(
                "POST", f"{server.url}/services/stop/nap", seconds, timeout=30
            )

        calls = [
            threading.Thread(target=call, args=("short", 0.5)),
            threading.Thread(target=call, args=("long", 60)),
        ]
        for thread in calls:
            thread.start()
        time.sleep(0.3)  # both under way
        stopped_at = time.monotonic()
        server.proc.terminate()
        server.proc.wait(timeout=20)
        took = time.monotonic() - stopped_at
        for thread in calls:
            thread.join(timeout=10)

        assert answers["short"] == (200, "rested")
        status, body = answers["long"]
        assert status == 503 and body["error"] == "shutting_down" and body["execution_id"]
        assert took < GRACE + 5, took  # the default grace of 10 s keeps this under 15 s
        assert processes.until(lambda: not any(processes.alive(pid) for pid in workers), timeout=5)
    finally:
        server.stop()


def test_what_was_left_running_is_replayed_at_the_next_start(tmp_path):
    env = {"FLUX_SHUTDOWN_GRACE": "0.5"}
    server = processes.start_server(tmp_path, env=env)
    try:
        status, body = processes.register_source(server.url, SOURCE, "stop.py")
        assert status == 201, body
        processes.http("POST", f"{server.url}/services", {"name": "stop", "namespaces": ["stop"]})
        status, started = processes.http("POST", f"{server.url}/services/stop/nap/async", 1.5)
        assert status == 202
        time.sleep(0.3)
    finally:
        server.stop()
    again = processes.start_server(tmp_path, port=server.port, env=env)
    try:

        def finished():
            _, answer = processes.http("GET", again.url + started["status_url"])
            return answer if answer["state"] == "COMPLETED" else None

        assert processes.until(finished, timeout=20)["output"] == "rested"
    finally:
        again.stop()
