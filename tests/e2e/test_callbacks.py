"""Completion callbacks end to end: real `flux start server` processes POST to a receiver that
this test runs on 127.0.0.1, and the receiver checks every signature with the reference
Standard Webhooks library."""

from __future__ import annotations

import base64
import subprocess
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from tests.e2e import processes
from tests.e2e.conftest import Api
from tests.e2e.test_replicas import Worker, _postgres_url

SECRET = "whsec_" + base64.b64encode(b"e2e callback key, 32 bytes long!").decode()
CALLBACKS = {"FLUX_CALLBACKS__SECRET": SECRET, "FLUX_CALLBACKS__ALLOWED_HOSTS": "127.0.0.1"}
HEADER = "Flux-Callback-Url"

SOURCE = """
import asyncio

from flux import ExecutionContext, pause, task, workflow


@task
async def nap(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@workflow.with_options(namespace="hooks")
async def done(ctx: ExecutionContext):
    return {"got": ctx.input}


@workflow.with_options(namespace="hooks")
async def broken(ctx: ExecutionContext):
    raise ValueError("no luck")


@workflow.with_options(namespace="hooks")
async def approve(ctx: ExecutionContext):
    answer = await pause("approval", output={"asks": "ok?"})
    return {"approved": answer}


@workflow.with_options(namespace="hooks")
async def slow(ctx: ExecutionContext):
    await nap(60)
    return "slept"
"""


class Receiver:
    """An HTTP receiver on 127.0.0.1 that records every POST and answers the statuses of
    `answers` in turn, then 200."""

    def __init__(self, port: int | None = None, answers: tuple[int, ...] = ()) -> None:
        self.port = port or processes.free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.answers = list(answers)
        self.calls: list[tuple[dict[str, str], bytes, float]] = []
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.calls.append((dict(self.headers.items()), body, time.time()))
                    status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def verified(self) -> list[tuple[dict[str, str], dict[str, Any]]]:
        """Every call so far as (headers, body), each signature checked."""
        with self._lock:
            calls = list(self.calls)
        return [(h, Webhook(SECRET).verify(body.decode(), h)) for h, body, _ in calls]

    def for_execution(self, execution_id: str) -> list[dict[str, Any]]:
        return [body for _, body in self.verified() if body["execution_id"] == execution_id]

    def wait_for(self, execution_id: str, count: int, timeout: float = 20.0) -> list[Any]:
        found = processes.until(lambda: len(self.for_execution(execution_id)) >= count, timeout)
        assert found, f"{count} deliveries for {execution_id} not seen: {self.verified()}"
        return self.for_execution(execution_id)


def setup_hooks(api: Api) -> None:
    api.register(SOURCE, "hooks.py")
    status, body = api.post("/services", {"name": "hooks", "namespaces": ["hooks"]})
    assert status in (201, 409), body


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Any:
    flux = processes.start_server(tmp_path_factory.mktemp("callbacks"), env=CALLBACKS)
    try:
        setup_hooks(Api(flux.url))
        yield flux
    finally:
        flux.stop()


@pytest.fixture
def receiver() -> Any:
    hook = Receiver().start()
    try:
        yield hook
    finally:
        hook.stop()


def post(server: Any, path: str, body: Any = None, url: str | None = None, **headers: str):
    sent = dict(headers)
    if url is not None:
        sent[HEADER] = url
    return processes.exchange("POST", server.url + path, body, headers=sent)


def test_every_told_state_is_delivered_signed_in_every_mode(server, receiver):
    status, completed, headers = post(server, "/services/hooks/done", {"n": 1}, receiver.url)
    assert status == 200, completed
    done_id = headers["Flux-Execution-Id"]
    status, failed, _ = post(server, "/services/hooks/broken", {}, receiver.url)
    assert status == 500, failed
    status, by_ref, _ = post(server, "/workflows/hooks/done/run/async", 7, receiver.url)
    assert status == 202, by_ref
    status, paused, _ = post(server, "/services/hooks/approve", {}, receiver.url)
    assert status == 202 and paused["state"] == "PAUSED", paused
    status, slow, _ = post(server, "/services/hooks/slow/async", {}, receiver.url)
    assert status == 202, slow
    status, streamed, headers = post(server, "/services/hooks/done/stream", 3, receiver.url)
    assert status == 200 and "COMPLETED" in streamed, streamed
    stream_id = headers["Flux-Execution-Id"]

    (told,) = receiver.wait_for(done_id, 1)
    assert told == {
        "execution_id": done_id,
        "state": "COMPLETED",
        "output": {"got": {"n": 1}},
        "namespace": "hooks",
        "workflow": "done",
    }
    (told,) = receiver.wait_for(failed["execution_id"], 1)
    assert told["state"] == "FAILED" and told["error"]["type"] == "ValueError"
    (told,) = receiver.wait_for(by_ref["execution_id"], 1)
    assert told["output"] == {"got": 7}
    assert receiver.wait_for(stream_id, 1)[0]["state"] == "COMPLETED"

    (told,) = receiver.wait_for(paused["execution_id"], 1)
    assert told["state"] == "PAUSED" and told["output"] == {"asks": "ok?"}
    assert told["resume_url"] == paused["resume_url"]
    status, resumed, _ = post(server, paused["resume_url"], "yes")
    assert status == 200, resumed
    first, second = receiver.wait_for(paused["execution_id"], 2)
    assert second["state"] == "COMPLETED" and second["output"] == {"approved": "yes"}

    status, cancelled, _ = post(server, f"/services/hooks/slow/cancel/{slow['execution_id']}")
    assert status == 200, cancelled
    (told,) = receiver.wait_for(slow["execution_id"], 1)
    assert told["state"] == "CANCELLED"

    ids = [h["webhook-id"] for h, _ in receiver.verified()]
    assert len(ids) == len(set(ids)) == 7 and all(i.startswith("msg_") for i in ids)


def test_a_failing_receiver_is_retried_under_the_same_webhook_id(server):
    receiver = Receiver(answers=(500, 503)).start()
    try:
        status, body, headers = post(server, "/services/hooks/done", "again", receiver.url)
        assert status == 200, body
        receiver.wait_for(headers["Flux-Execution-Id"], 3)
        time.sleep(1.5)  # delivered on the third: no fourth attempt comes
        calls = receiver.verified()
        assert len(calls) == 3
        assert len({h["webhook-id"] for h, _ in calls}) == 1
        times = [at for _, _, at in receiver.calls]
        assert times[1] - times[0] < 10  # the first retry within 10 s
        # The attempts show with the execution, over HTTP and in `flux execution show`.
        execution_id = headers["Flux-Execution-Id"]
        status, shown = processes.http("GET", f"{server.url}/executions/{execution_id}")
        assert status == 200, shown
        (callback,) = shown["callbacks"]
        assert callback["id"] == calls[0][0]["webhook-id"] and callback["url"] == receiver.url
        assert (callback["state"], callback["attempts"]) == ("delivered", 3)
        assert callback["last_error"] == "HTTP 503" and callback["delivered_at"].endswith("Z")
        cli = subprocess.run(
            processes.flux_command("execution", "show", execution_id, "--server-url", server.url),
            capture_output=True,
            text=True,
            timeout=30,
            env=processes.child_env(),
        )
        assert cli.returncode == 0, cli.stderr
        assert "Callbacks:" in cli.stdout and callback["id"] in cli.stdout, cli.stdout
    finally:
        receiver.stop()


def test_a_delivery_owed_when_the_server_stops_is_made_after_its_restart(tmp_path: Path):
    receiver = Receiver()  # not listening yet: every attempt fails
    first = processes.start_server(tmp_path, env=CALLBACKS)
    try:
        setup_hooks(Api(first.url))
        status, body, headers = post(first, "/services/hooks/done", "later", receiver.url)
        assert status == 200, body
        execution_id = headers["Flux-Execution-Id"]
        time.sleep(1.5)  # an attempt or two, refused
    finally:
        first.stop()
    assert first.proc is not None and first.proc.returncode is not None
    second = processes.start_server(tmp_path, port=first.port, env=CALLBACKS)
    try:
        receiver.start()
        (told,) = receiver.wait_for(execution_id, 1, timeout=30)
        assert told["state"] == "COMPLETED" and told["output"] == {"got": "later"}
    finally:
        receiver.stop()
        second.stop()


def executions_of(server: Any, workflow: str) -> int:
    status, body = processes.http("GET", f"{server.url}/executions?workflow={workflow}&limit=500")
    assert status == 200, body
    return len(body["executions"])


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/hook",
        "http://localhost:9/hook",
        "http://10.0.0.1/hook",
        "http://127.0.0.1.example.com/hook",
        "http://user:secret@127.0.0.1/hook",
        "http://127.0.0.1:99999/hook",
        "not a url",
    ],
)
def test_a_forbidden_callback_url_is_400_before_anything_runs(server, url):
    before = executions_of(server, "hooks/done")
    for path in (
        "/services/hooks/done",
        "/services/hooks/done/async",
        "/services/hooks/done/stream",
        "/workflows/hooks/done/run",
    ):
        status, body, _ = post(server, path, {"n": 1}, url)
        assert status == 400, (path, body)
        assert body["error"] == "invalid_request" and HEADER in body["message"], body
    assert executions_of(server, "hooks/done") == before


def test_without_callbacks_configured_a_callback_url_is_400(tmp_path: Path):
    plain = processes.start_server(tmp_path)
    try:
        setup_hooks(Api(plain.url))
        status, body, _ = post(plain, "/services/hooks/done", 1, "http://127.0.0.1:9/hook")
        assert status == 400 and "not configured" in body["message"], body
        assert executions_of(plain, "hooks/done") == 0
        status, body, _ = post(plain, "/services/hooks/done", 1)  # without: as ever
        assert status == 200, body
    finally:
        plain.stop()


def test_the_standalone_process_passes_the_callback_url_on(server, receiver, tmp_path: Path):
    standalone = processes.start_standalone(tmp_path, "hooks", server.url)
    try:
        status, body, headers = post(standalone, "/done", "via standalone", receiver.url)
        assert status == 200, body
        (told,) = receiver.wait_for(headers["Flux-Execution-Id"], 1)
        assert told["output"] == {"got": "via standalone"}
        status, body, _ = post(standalone, "/done", 1, "http://10.0.0.1/hook")
        assert status == 400, body
    finally:
        standalone.stop()


def test_the_in_process_runtime_tells_its_outcomes_too(tmp_path: Path, receiver):
    inline = processes.start_server(tmp_path, env={**CALLBACKS, "FLUX_ISOLATION": "none"})
    try:
        setup_hooks(Api(inline.url))
        status, _, headers = post(inline, "/services/hooks/done", 5, receiver.url)
        assert status == 200
        assert receiver.wait_for(headers["Flux-Execution-Id"], 1)[0]["output"] == {"got": 5}
        status, paused, _ = post(inline, "/workflows/hooks/approve/run", {}, receiver.url)
        assert status == 202, paused
        (told,) = receiver.wait_for(paused["execution_id"], 1)
        assert told["resume_url"] == f"/workflows/hooks/approve/resume/{paused['execution_id']}"
    finally:
        inline.stop()


@pytest.fixture
def postgres_url() -> Any:
    yield from _postgres_url()


def test_replicas_on_postgresql_deliver_each_callback_once(tmp_path: Path, postgres_url, receiver):
    servers: list[processes.FluxProcess] = []
    worker = None
    try:
        for _ in range(2):
            port = processes.free_port()
            args = ["start", "server", "--host", "127.0.0.1", "--port", str(port)]
            args += ["--database-url", postgres_url, "--executor", "workers"]
            servers.append(processes.FluxProcess(args, tmp_path, port, env=CALLBACKS).start(30))
        worker = Worker(tmp_path, postgres_url, "worker0")
        setup_hooks(Api(servers[0].url))
        ids = []
        for i in range(10):  # through both replicas, run by a `flux start worker` process
            status, body, _ = post(servers[i % 2], "/services/hooks/done/async", i, receiver.url)
            assert status == 202, body
            ids.append(body["execution_id"])
        for execution_id in ids:
            receiver.wait_for(execution_id, 1, timeout=30)
        time.sleep(1.0)  # a second delivery by the other replica would come by now
        told = Counter(body["execution_id"] for _, body in receiver.verified())
        assert told == Counter(ids)
    finally:
        if worker is not None:
            worker.stop()
        for server in servers:
            server.stop()
