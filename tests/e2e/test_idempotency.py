"""Idempotency-Key end to end (SPEC §8), with real processes: `flux start server` on SQLite,
the standalone service process in front of it, a server with auth on, and the CLI.

The `tally` workflow appends one line to a file per run of its task, so counting the lines
counts the executions that really ran, whatever the answers say. Restarts and auth, which need
servers of their own, are in test_idempotency_restarts.py.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import processes

SOURCE = """
import asyncio

from flux import ExecutionContext, pause, task, workflow


@task
async def append(path: str, line: str) -> int:
    with open(path, "a") as file:
        file.write(line + "\\n")
    with open(path) as file:
        return len(file.readlines())


@workflow.with_options(namespace="idem")
async def tally(ctx: ExecutionContext):
    await asyncio.sleep(ctx.input.get("sleep", 0))
    return {"lines": await append(ctx.input["path"], ctx.input.get("line", "x"))}


@workflow.with_options(namespace="idem")
async def approval(ctx: ExecutionContext):
    answer = await pause("approval")
    await append(ctx.input["path"], "resumed")
    return {"answer": answer}
"""

BASE = "/services/idem"
KEY = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"


def call(
    url: str, path: str, body: Any, key: str | None = None, **headers: str
) -> tuple[int, Any, Any]:
    sent = dict(headers)
    if key is not None:
        sent[KEY] = key
    return processes.exchange("POST", url + path, body, headers=sent)


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def new_key() -> str:
    return f"key-{uuid.uuid4().hex}"


def setup_service(url: str, headers: dict[str, str] | None = None) -> None:
    status, body = processes.http(
        "POST",
        f"{url}/workflows?filename=idem.py",
        raw=SOURCE.encode(),
        headers={"Content-Type": "text/x-python", **(headers or {})},
    )
    assert status == 201, body
    status, body = processes.http(
        "POST", f"{url}/services", {"name": "idem", "namespaces": ["idem"]}, headers=headers
    )
    assert status == 201, body


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = processes.start_server(tmp_path_factory.mktemp("idem"))
    try:
        setup_service(process.url)
        yield process
    finally:
        process.stop()


# -- replays ----------------------------------------------------------------------------------


def test_a_sync_retry_answers_the_same_status_and_body_and_runs_nothing(server, tmp_path):
    out, key = tmp_path / "sync.txt", new_key()
    first = call(server.url, f"{BASE}/tally?detailed=true", {"path": str(out)}, key)
    again = call(server.url, f"{BASE}/tally?detailed=true", {"path": str(out)}, key)
    assert first[0] == again[0] == 200 and first[1] == again[1], (first, again)
    assert first[1]["state"] == "COMPLETED" and first[1]["output"] == {"lines": 1}
    assert REPLAYED not in first[2] and again[2][REPLAYED] == "true"
    assert again[2]["Flux-Execution-Id"] == first[1]["execution_id"]
    raw = call(server.url, f"{BASE}/tally", {"path": str(out)}, key)  # `detailed` runs nothing
    assert raw[:2] == (200, {"lines": 1}) and raw[2][REPLAYED] == "true"
    assert lines(out) == 1


def test_an_async_retry_gets_the_same_202_and_a_sync_one_waits_for_it(server, tmp_path):
    out, key = tmp_path / "async.txt", new_key()
    body = {"path": str(out), "sleep": 1.0}
    first = call(server.url, f"{BASE}/tally/async", body, key)
    again = call(server.url, f"{BASE}/tally/async", body, key)
    assert first[0] == again[0] == 202, (first, again)
    assert again[1]["execution_id"] == first[1]["execution_id"]
    assert again[2][REPLAYED] == "true"
    waited = call(server.url, f"{BASE}/tally?detailed=true", body, key)
    assert waited[0] == 200 and waited[1]["state"] == "COMPLETED", waited
    assert waited[1]["execution_id"] == first[1]["execution_id"]
    assert lines(out) == 1


def test_a_bounded_retry_of_a_running_call_answers_202_at_the_bound(server, tmp_path):
    out, key = tmp_path / "bounded.txt", new_key()
    body = {"path": str(out), "sleep": 6.0}
    first = call(server.url, f"{BASE}/tally/async", body, key)
    started = time.monotonic()
    again = call(server.url, f"{BASE}/tally", body, key, Prefer="wait=1")
    assert again[0] == 202 and again[1]["state"] in ("CREATED", "RUNNING"), again
    assert again[2]["Preference-Applied"] == "wait=1" and again[2][REPLAYED] == "true"
    assert again[1]["execution_id"] == first[1]["execution_id"]
    assert time.monotonic() - started < 5


def test_a_stream_retry_streams_the_first_execution(server, tmp_path):
    out, key = tmp_path / "stream.txt", new_key()
    first = call(server.url, f"{BASE}/tally", {"path": str(out)}, key)
    streamed = call(server.url, f"{BASE}/tally/stream", {"path": str(out)}, key)
    assert streamed[0] == 200 and streamed[2][REPLAYED] == "true"
    assert streamed[2]["Flux-Execution-Id"] == first[2]["Flux-Execution-Id"]
    assert '"COMPLETED"' in streamed[1] and lines(out) == 1


def test_a_resume_retry_answers_the_first_resume_not_a_409(server, tmp_path):
    out = tmp_path / "resume.txt"
    status, paused = processes.http("POST", f"{server.url}{BASE}/approval", {"path": str(out)})
    assert status == 202 and paused["state"] == "PAUSED", paused
    resume = f"{BASE}/approval/resume/{paused['execution_id']}?detailed=true"
    key = new_key()
    first = call(server.url, resume, {"ok": True}, key)
    again = call(server.url, resume, {"ok": True}, key)
    assert first[0] == again[0] == 200 and first[1] == again[1], (first, again)
    assert first[1]["output"] == {"answer": {"ok": True}} and again[2][REPLAYED] == "true"
    assert lines(out) == 1
    # Without the key it is a new resume of a finished execution: refused, as always.
    assert call(server.url, resume, {"ok": True})[0] == 409
    # A resume refused outright gives its key back: the same request is refused again (409).
    other = new_key()
    assert call(server.url, resume, {"ok": True}, other)[0] == 409
    refused = call(server.url, resume, {"ok": True}, other)
    assert refused[0] == 409 and REPLAYED not in refused[2]


def test_a_refused_body_gives_its_key_back_for_the_corrected_retry(server, tmp_path):
    out, key = tmp_path / "corrected.txt", new_key()
    assert call(server.url, f"{BASE}/nowhere", {"path": str(out)}, key)[0] == 404
    done = call(server.url, f"{BASE}/tally", {"path": str(out)}, key)
    assert done[:2] == (200, {"lines": 1}) and REPLAYED not in done[2]


# -- refusals ---------------------------------------------------------------------------------


def test_the_same_key_with_another_body_or_target_is_422(server, tmp_path):
    out, key = tmp_path / "reuse.txt", new_key()
    assert call(server.url, f"{BASE}/tally", {"path": str(out)}, key)[0] == 200
    for path, body in [
        (f"{BASE}/tally", {"path": str(out), "line": "other"}),
        (f"{BASE}/approval", {"path": str(out)}),
        ("/workflows/idem/tally/run", {"path": str(out)}),  # by ref: another target
        (f"{BASE}/tally?version=1", {"path": str(out)}),
    ]:
        status, answer, _ = call(server.url, path, body, key)
        assert status == 422 and answer["error"] == "idempotency_key_reused", (path, answer)
    assert lines(out) == 1


@pytest.mark.parametrize("bad", ["", "has space", "x" * 256, "caf\u00e9", "tab\there"])
def test_a_malformed_key_is_400_before_anything_runs(server, tmp_path, bad):
    out = tmp_path / "bad.txt"
    status, answer, _ = call(server.url, f"{BASE}/tally", {"path": str(out)}, bad)
    assert status == 400 and answer["error"] == "invalid_request", answer
    assert "Idempotency-Key" in answer["message"]
    assert lines(out) == 0


def test_the_longest_key_of_visible_ascii_is_taken(server, tmp_path):
    out = tmp_path / "long.txt"
    key = ("!~" + "".join(chr(c) for c in range(0x21, 0x7F)) * 3)[:255]
    first = call(server.url, f"{BASE}/tally", {"path": str(out)}, key)
    again = call(server.url, f"{BASE}/tally", {"path": str(out)}, key)
    assert first[0] == again[0] == 200 and again[2][REPLAYED] == "true"
    assert lines(out) == 1


# -- concurrency ------------------------------------------------------------------------------


def test_sixteen_concurrent_requests_with_one_key_make_one_execution(server, tmp_path):
    out, key = tmp_path / "concurrent.txt", new_key()
    body = {"path": str(out), "sleep": 0.3}
    with ThreadPoolExecutor(16) as pool:
        answers = list(
            pool.map(
                lambda _: call(server.url, f"{BASE}/tally?detailed=true", body, key), range(16)
            )
        )
    assert all(status == 200 for status, _, _ in answers), answers
    assert len({answer["execution_id"] for _, answer, _ in answers}) == 1
    assert sum(headers.get(REPLAYED) == "true" for _, _, headers in answers) == 15
    assert lines(out) == 1


# -- the standalone process -------------------------------------------------------------------


def test_a_key_is_one_target_through_the_standalone_process_and_the_main_server(server, tmp_path):
    standalone = processes.start_standalone(tmp_path, "idem", server.url, "--no-mcp")
    try:
        out, key = tmp_path / "standalone.txt", new_key()
        first = call(standalone.url, "/tally?detailed=true", {"path": str(out)}, key)
        assert first[0] == 200 and REPLAYED not in first[2], first
        main = call(server.url, f"{BASE}/tally?detailed=true", {"path": str(out)}, key)
        again = call(standalone.url, "/tally?detailed=true", {"path": str(out)}, key)
        for replay in (main, again):
            assert replay[0] == 200 and replay[2][REPLAYED] == "true", replay
            assert replay[1]["execution_id"] == first[1]["execution_id"]
        reused = call(standalone.url, "/tally", {"path": str(out), "line": "y"}, key)
        assert reused[0] == 422 and reused[1]["error"] == "idempotency_key_reused"
        assert lines(out) == 1
    finally:
        standalone.stop()


# -- the CLI ----------------------------------------------------------------------------------


def _cli(server: processes.FluxProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        processes.flux_command(*args, "--server-url", server.url, "--format", "json"),
        cwd=server.cwd,
        env=processes.child_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_run_and_resume_with_an_idempotency_key(server, tmp_path):
    out, key = tmp_path / "cli.txt", new_key()
    body = json.dumps({"path": str(out)})
    runs = [_cli(server, "workflow", "run", "idem/tally", body, "--idempotency-key", key)]
    runs.append(_cli(server, "workflow", "run", "idem/tally", body, "--idempotency-key", key))
    for done in runs:
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"lines": 1}
    assert lines(out) == 1

    paused = _cli(server, "workflow", "run", "idem/approval", body, "--detailed")
    execution_id = json.loads(paused.stdout)["execution_id"]
    resume = ["workflow", "resume", "idem/approval", execution_id, '"go"', "--detailed"]
    resumed = [_cli(server, *resume, "--idempotency-key", key + "-r") for _ in range(2)]
    for done in resumed:
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["output"] == {"answer": "go"}
    assert lines(out) == 2

    reused = _cli(
        server, "workflow", "run", "idem/tally", '{"path": "x"}', "--idempotency-key", key
    )
    assert reused.returncode == 1 and "idempotency_key_reused" in reused.stderr + reused.stdout


def test_cli_wait_bounds_a_sync_run_and_bad_flags_are_refused_locally(server, tmp_path):
    out = tmp_path / "cli-wait.txt"
    body = json.dumps({"path": str(out), "sleep": 8})
    started = time.monotonic()
    waited = _cli(server, "workflow", "run", "idem/tally", body, "--wait", "1", "--detailed")
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["state"] in ("CREATED", "RUNNING")
    assert time.monotonic() - started < 7  # the CLI's own start is slow on a busy machine
    bad_key = _cli(server, "workflow", "run", "idem/tally", body, "--idempotency-key", "a b")
    assert bad_key.returncode == 2 and "--idempotency-key" in bad_key.stderr
    bad_mode = _cli(server, "workflow", "run", "idem/tally", body, "--wait", "1", "--mode", "async")
    assert bad_mode.returncode == 2 and "--wait" in bad_mode.stderr
    helped = _cli(server, "workflow", "run", "--help")
    assert "--idempotency-key KEY" in helped.stdout and "--wait SECONDS" in helped.stdout
    helped = _cli(server, "workflow", "resume", "--help")
    assert "--idempotency-key KEY" in helped.stdout and "--wait SECONDS" in helped.stdout
