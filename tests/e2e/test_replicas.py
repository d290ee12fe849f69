"""Several server replicas and worker processes on one PostgreSQL database (issue 9).

Two `flux start server --executor workers` replicas and two `flux start worker` processes
share one schema: calls go through both replicas, a worker is killed with SIGKILL in the
middle of an execution and the other finishes it, and every execution is accounted for.
Needs FLUX_TEST_POSTGRES_DSN (`eval "$(bash .ci/postgres.sh)"`); skipped with the reason
otherwise. The last test checks that the embedded executor on SQLite is unchanged.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e import processes
from tests.e2e.conftest import Api

DSN_VARIABLE = "FLUX_TEST_POSTGRES_DSN"
LEASE = 3.0  # seconds: a dead worker's executions are taken over after about this long
SETTLE = 60.0  # seconds any wait here may last at most

SOURCE = """
import os
import time

from flux import ExecutionContext, pause, task, workflow

NS = "NS_HERE"


def _line(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (text + "\\n").encode())
    finally:
        os.close(fd)


@task
def step(effects: str, execution_id: str, key: str, seconds: float) -> str:
    _line(effects, f"start {execution_id} {key} {os.getpid()}")
    time.sleep(seconds)
    _line(effects, f"done {execution_id} {key} {os.getpid()}")
    return f"{key}@{os.getpid()}"  # which attempt's result made it into the log


@workflow.with_options(namespace=NS)
async def steps(ctx: ExecutionContext):
    data = ctx.input
    done = []
    for i in range(data["n"]):
        done.append(await step(data["effects"], ctx.execution_id, f"step{i}", data["seconds"]))
    return {"steps": done}


@workflow.with_options(namespace=NS)
async def approve(ctx: ExecutionContext):
    answer = await pause("approval", output={"asked": ctx.input})
    return {"approved": answer}
"""

LATER = """
from flux import ExecutionContext, workflow


@workflow.with_options(namespace="NS_HERE")
async def later(ctx: ExecutionContext):
    return {"later": ctx.input}
"""


# -- processes ----------------------------------------------------------------------------------


class Worker:
    """One `flux start worker` we started; ended only through its own PID."""

    def __init__(self, cwd: Path, database_url: str, name: str) -> None:
        self.log_path = cwd / f"{name}.log"
        args = ["start", "worker", "--database-url", database_url]
        args += ["--concurrency", "4", "--lease-seconds", str(LEASE)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                processes.flux_command(*args),
                cwd=cwd,
                env=processes.child_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        ready = processes.until(lambda: "ready" in self.log() or self.proc.poll() is not None, 30)
        if not ready or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"worker did not start:\n{self.log()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # SIGKILL, to this PID only
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def _postgres_url() -> Iterator[str]:
    """A database URL on a fresh schema of the test server; the schema is dropped after."""
    dsn = os.environ.get(DSN_VARIABLE, "").strip()
    if not dsn:
        pytest.skip(f'{DSN_VARIABLE} is not set (start a server: eval "$(bash .ci/postgres.sh)")')
    import asyncpg

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin("SELECT 1"))
    except (OSError, TimeoutError, asyncpg.PostgreSQLError, asyncpg.InterfaceError) as exc:
        pytest.skip(f"PostgreSQL at {DSN_VARIABLE} is unreachable: {exc!r}")
    schema = f"flux_e2e_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in dsn else "?"
    try:
        yield f"{dsn}{separator}schema={schema}"
    finally:
        asyncio.run(admin(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))


class Cluster:
    def __init__(self, cwd: Path, database_url: str) -> None:
        self.cwd = cwd
        self.database_url = database_url
        self.effects = cwd / "effects.log"
        self.servers: list[processes.FluxProcess] = []
        self.workers: list[Worker] = []

    def start_server(self) -> Api:
        port = processes.free_port()
        args = ["start", "server", "--host", "127.0.0.1", "--port", str(port)]
        args += ["--database-url", self.database_url, "--executor", "workers"]
        server = processes.FluxProcess(args, self.cwd, port)
        self.servers.append(server)
        server.start(timeout=30)
        return Api(server.url)

    def start_worker(self) -> Worker:
        worker = Worker(self.cwd, self.database_url, f"worker{len(self.workers)}")
        self.workers.append(worker)
        return worker

    def effect_lines(self) -> list[list[str]]:
        if not self.effects.exists():
            return []
        return [line.split() for line in self.effects.read_text().splitlines() if line]

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        for server in self.servers:
            server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    for database_url in _postgres_url():
        cluster = Cluster(tmp_path_factory.mktemp("replicas"), database_url)
        try:
            cluster.start_server()
            cluster.start_server()
            cluster.start_worker()
            cluster.start_worker()
            yield cluster
        except BaseException:
            for process in [*cluster.servers]:
                print(process.log())
            for worker in cluster.workers:
                print(worker.log())
            raise
        finally:
            cluster.stop()


@pytest.fixture(scope="module")
def replicas(cluster) -> tuple[Api, Api]:
    one, two = (Api(server.url) for server in cluster.servers)
    one.register(SOURCE.replace("NS_HERE", "rep"), "rep.py")
    # Created through the other replica: the first one must see it on its next request.
    two.service("rep", namespaces=["rep"])
    return one, two


def _input(cluster: Cluster, n: int, seconds: float) -> dict:
    return {"n": n, "seconds": seconds, "effects": str(cluster.effects)}


def _settled(api: Api, execution_id: str, workflow: str = "steps") -> dict:
    def done():
        status, body = api.get(f"/services/rep/{workflow}/status/{execution_id}")
        assert status == 200, body
        return body if body["state"] not in ("CREATED", "RUNNING") else None

    body = processes.until(done, SETTLE, step=0.1)
    assert body, f"execution {execution_id} did not settle in {SETTLE}s"
    return body


def _keys(output: dict) -> list[str]:
    return [step.split("@")[0] for step in output["steps"]]


def _accounted(cluster: Cluster, finals: list[dict], killed: int | None = None) -> None:
    """Each completed task's side effect happened once in the attempt whose result was logged;
    any other attempt of that task is one the killed worker could not log."""
    done = Counter(
        (line[1], line[2], int(line[3])) for line in cluster.effect_lines() if line[0] == "done"
    )
    for final in finals:
        execution_id = final["execution_id"]
        for step in final["output"]["steps"]:
            key, logged_pid = step.split("@")
            assert done[(execution_id, key, int(logged_pid))] == 1, (final, done)
            others = {
                pid
                for (e, k, pid) in done
                if (e, k) == (execution_id, key) and pid != int(logged_pid)
            }
            assert others <= {killed}, (final, others, done)


# -- tests --------------------------------------------------------------------------------------


def test_sync_calls_through_both_replicas_are_run_by_the_workers(cluster, replicas):
    one, two = replicas
    ids, finals = [], []
    for i in range(6):
        api = (one, two)[i % 2]
        status, body = api.post("/services/rep/steps?detailed=true", _input(cluster, 2, 0.0))
        assert status == 200, body
        assert body["state"] == "COMPLETED" and _keys(body["output"]) == ["step0", "step1"]
        ids.append(body["execution_id"])
        finals.append(body)
    _accounted(cluster, finals)
    worker_pids = {int(line[3]) for line in cluster.effect_lines() if line[1] in ids}
    assert worker_pids <= {worker.pid for worker in cluster.workers}


def test_an_execution_started_on_one_replica_is_queried_on_the_other(cluster, replicas):
    one, two = replicas
    status, body = one.post("/services/rep/steps/async", _input(cluster, 2, 0.2))
    assert status == 202, body
    final = _settled(two, body["execution_id"])
    assert final["state"] == "COMPLETED" and _keys(final["output"]) == ["step0", "step1"]
    _accounted(cluster, [final])


def test_a_pause_from_one_replica_is_resumed_through_the_other(replicas):
    one, two = replicas
    status, paused = one.post("/services/rep/approve", {"amount": 3})
    assert status == 202, paused
    assert paused["state"] == "PAUSED" and paused["output"] == {"asked": {"amount": 3}}
    execution_id = paused["execution_id"]

    assert two.post(f"/services/rep/approve/resume/{execution_id}", {"ok": True}) == (
        200,
        {"approved": {"ok": True}},
    )
    status, body = one.post(f"/services/rep/approve/resume/{execution_id}", {"ok": False})
    assert status == 409 and body["state"] == "COMPLETED", body
    status, body = one.get(f"/services/rep/approve/status/{execution_id}")
    assert body["state"] == "COMPLETED" and body["output"] == {"approved": {"ok": True}}


def test_one_idempotency_key_sent_to_both_replicas_at_once_makes_one_execution(cluster, replicas):
    key, body = f"rep-{uuid.uuid4().hex}", _input(cluster, 1, 0.2)

    def send(api: Api) -> tuple[int, dict, str | None]:
        status, answer, headers = processes.exchange(
            "POST",
            f"{api.url}/services/rep/steps?detailed=true",
            body,
            headers={"Idempotency-Key": key},
        )
        return status, answer, headers.get("Idempotent-Replayed")

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, [*replicas] * 8))
    assert all(status == 200 for status, _, _ in answers), answers
    ids = {answer["execution_id"] for _, answer, _ in answers}
    assert len(ids) == 1 and [replayed for *_, replayed in answers].count(None) == 1
    started = [line for line in cluster.effect_lines() if line[0] == "start" and line[1] in ids]
    assert len(started) == 1, started


def test_a_cancel_through_one_replica_stops_the_run_a_worker_holds(cluster, replicas):
    one, two = replicas
    status, started = one.post("/services/rep/steps/async", _input(cluster, 3, 1.5))
    assert status == 202, started
    execution_id = started["execution_id"]

    def running_on_a_worker() -> bool:
        return any(line[:3] == ["start", execution_id, "step0"] for line in cluster.effect_lines())

    assert processes.until(running_on_a_worker, SETTLE), "no worker started the run"
    status, body = two.post(f"/services/rep/steps/cancel/{execution_id}", {})
    assert status == 200 and body["state"] == "CANCELLED", body
    time.sleep(2 * LEASE)  # the worker learns it at its next renewal at the latest
    mine = [line for line in cluster.effect_lines() if line[1] == execution_id]
    assert not [line for line in mine if line[0] == "start" and line[2] != "step0"], mine
    for api in (one, two):
        status, body = api.get(f"/services/rep/steps/status/{execution_id}")
        assert status == 200 and body["state"] == "CANCELLED", body


def test_a_workflow_registered_on_one_replica_is_resolved_by_the_other_at_once(replicas):
    one, two = replicas
    two.register(LATER.replace("NS_HERE", "rep"), "later.py")
    assert one.post("/services/rep/later", {"x": 1}) == (200, {"later": {"x": 1}})
    two.service("rep-later", workflows=["rep/later"])
    assert one.post("/services/rep-later/later", 5) == (200, {"later": 5})


def test_a_killed_worker_s_execution_is_finished_by_the_other(cluster, replicas):
    one, two = replicas
    n = 3
    ids = []
    for i in range(4):
        status, body = (one, two)[i % 2].post("/services/rep/steps/async", _input(cluster, n, 1.0))
        assert status == 202, body
        ids.append(body["execution_id"])

    def second_step_started() -> tuple[int, str] | None:
        # `step1` starts only after `step0`'s result is in the log: killing now loses a task
        # in flight, never a finished one.
        for line in cluster.effect_lines():
            if line[0] == "start" and line[1] in ids and line[2] == "step1":
                return int(line[3]), line[1]
        return None

    found = processes.until(second_step_started, SETTLE)
    assert found, "no execution reached its second step"
    victim_pid, interrupted = found
    victim = next(worker for worker in cluster.workers if worker.pid == victim_pid)
    survivor = next(worker for worker in cluster.workers if worker is not victim)
    victim.kill()
    killed_at = time.monotonic()

    finals = [_settled((two, one)[i % 2], execution_id) for i, execution_id in enumerate(ids)]
    assert [final["state"] for final in finals] == ["COMPLETED"] * len(ids), finals
    assert all(_keys(final["output"]) == [f"step{i}" for i in range(n)] for final in finals)
    # No finished task ran again; only attempts the killed worker never logged are repeated.
    _accounted(cluster, finals, killed=victim_pid)
    # The interrupted one: its first step is the killed worker's, the rest the survivor's.
    [output] = [final["output"] for final in finals if final["execution_id"] == interrupted]
    assert output["steps"] == [f"step0@{victim_pid}"] + [
        f"step{i}@{survivor.pid}" for i in range(1, n)
    ]
    assert time.monotonic() - killed_at < SETTLE
    assert survivor.proc.poll() is None, survivor.log()


# -- the embedded executor: on this machine, without `flux start worker` ------------------------


def test_the_embedded_executor_runs_workflows_in_the_servers_own_worker_processes(tmp_path):
    server = processes.start_server(tmp_path)
    try:
        api = Api(server.url)
        api.register(SOURCE.replace("NS_HERE", "emb"), "emb.py")
        api.service("emb", namespaces=["emb"])
        effects = tmp_path / "effects.log"
        body = {"n": 2, "seconds": 0.0, "effects": str(effects)}
        status, answer = api.post("/services/emb/steps", body)
        assert status == 200, answer
        [ran_in] = {step.split("@")[1] for step in answer["steps"]}
        assert int(ran_in) != server.proc.pid  # never in the server process itself
        assert processes.parent_of(int(ran_in)) == server.proc.pid  # in a worker the server started
        assert {line.split()[3] for line in effects.read_text().splitlines()} == {ran_in}
        assert (tmp_path / ".flux" / "flux.db").exists()
    finally:
        server.stop()


def test_isolation_none_runs_workflows_in_the_server_itself(tmp_path):
    port = processes.free_port()
    server = processes.FluxProcess(
        ["start", "server", "--host", "127.0.0.1", "--port", str(port), "--isolation", "none"],
        tmp_path,
        port,
    ).start()
    try:
        api = Api(server.url)
        api.register(SOURCE.replace("NS_HERE", "own"), "own.py")
        api.service("own", namespaces=["own"])
        body = {"n": 2, "seconds": 0.0, "effects": str(tmp_path / "effects.log")}
        pid = server.proc.pid
        assert api.post("/services/own/steps", body) == (
            200,
            {"steps": [f"step0@{pid}", f"step1@{pid}"]},
        )
    finally:
        server.stop()
