"""Workflow code that misbehaves at run time, on a real server with two local worker processes
(SPEC §7): a BaseException fails its run at once; a worker that dies (os._exit, SIGKILL,
SIGSEGV) or stalls (an async busy loop) is replaced and its runs are replayed from their logs,
three deaths end a run FAILED `WorkerCrashed`; meanwhile `/health` and the other services keep
answering. A worker killed under load loses no acknowledged execution and runs no finished task
twice; a server killed with SIGKILL comes back at once, finishes what was RUNNING, keeps what
was PAUSED and does not loop on a poison execution.

Worker processes are found as the server's children (`start worker --link-fd`); only those and
the servers started here are ever signalled, each by its PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import processes
from tests.e2e.conftest import Api

WORKERS = 2
SETTLE = 30.0  # seconds any wait for an execution to settle may last at most
CALL_TIMEOUT = 40.0  # seconds an HTTP call may take at most here
# Seconds a normal call may take: the first run on a fresh worker imports the module first, and
# the test machine may be busy.
PROMPT = 5.0
# A normal call that happened to be assigned to a stalled worker waits for its replacement.
STALLED_CALL = 8.0

SOURCE = '''
import asyncio
import ctypes
import os
import signal
import time

from flux import ExecutionContext, pause, task, workflow


class Escape(BaseException):
    """Not an Exception: a custom BaseException subclass."""


def _exception(name):
    return {
        "KeyboardInterrupt": lambda: KeyboardInterrupt("interrupted"),
        "SystemExit": lambda: SystemExit(3),
        "GeneratorExit": lambda: GeneratorExit("closed"),
        "Escape": lambda: Escape("out"),
    }[name]()


def _line(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (text + "\\n").encode())
    finally:
        os.close(fd)


def _attempts(path):
    """One more attempt recorded in `path`; how many there have been, this one included."""
    _line(path, str(os.getpid()))
    with open(path) as lines:
        return sum(1 for _ in lines)


def _die(how):
    if how == "exit":
        os._exit(1)
    if how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "segv":
        ctypes.string_at(0)
    raise AssertionError(how)


@task
def step(effects: str, execution_id: str, key: str, seconds: float) -> str:
    _line(effects, f"start {execution_id} {key} {os.getpid()}")
    time.sleep(seconds)
    _line(effects, f"done {execution_id} {key} {os.getpid()}")
    return f"{key}@{os.getpid()}"  # which attempt's result made it into the log


@task
async def raise_in_task(name: str) -> None:
    raise _exception(name)


@task
def die_in_task(how: str, attempts: str, times: int, delay: float) -> str:
    time.sleep(delay)
    if _attempts(attempts) <= times:
        _die(how)
    return f"survived@{os.getpid()}"


@workflow.with_options(namespace="iso")
async def raises(ctx: ExecutionContext):
    if ctx.input["where"] == "task":
        await raise_in_task(ctx.input["what"])
    raise _exception(ctx.input["what"])


@workflow.with_options(namespace="iso")
async def dies(ctx: ExecutionContext):
    data = ctx.input
    before = await step(data["effects"], ctx.execution_id, "before", 0.0)
    if data["where"] == "workflow":
        await asyncio.sleep(data["delay"])
        if _attempts(data["attempts"]) <= data["times"]:
            _die(data["how"])
        after = f"survived@{os.getpid()}"
    else:
        after = await die_in_task(data["how"], data["attempts"], data["times"], data["delay"])
    return {"before": before, "after": after}


@workflow.with_options(namespace="iso")
async def spins(ctx: ExecutionContext):
    while True:
        pass


@workflow.with_options(namespace="iso")
async def steps(ctx: ExecutionContext):
    data = ctx.input
    done = []
    for i in range(data["n"]):
        done.append(await step(data["effects"], ctx.execution_id, f"step{i}", data["seconds"]))
    return {"steps": done}


@workflow.with_options(namespace="iso")
async def approve(ctx: ExecutionContext):
    before = await step(ctx.input["effects"], ctx.execution_id, "before", 0.0)
    answer = await pause("approval")
    return {"before": before, "answer": answer}


@workflow.with_options(namespace="calm")
async def ping(ctx: ExecutionContext):
    return {"pong": ctx.input, "pid": os.getpid()}
'''


# -- processes ----------------------------------------------------------------------------------


def _start(cwd: Path, port: int | None = None) -> processes.FluxProcess:
    port = port or processes.free_port()
    args = ["start", "server", "--host", "127.0.0.1", "--port", str(port)]
    return processes.FluxProcess([*args, "--workers", str(WORKERS)], cwd, port).start(timeout=30)


def _workers_of(server_pid: int) -> set[int]:
    """The live worker processes the server started (not its registration sandbox)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = processes.proc_stat(int(entry.name))
        if stat is None or int(stat[1]) != server_pid or stat[0] in ("Z", "X"):
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"worker" in cmdline and b"--link-fd" in cmdline:
            found.add(int(entry.name))
    return found


def _full_pool(server: processes.FluxProcess, timeout: float = 10.0) -> set[int]:
    """The server's worker processes, once there are as many as it should have."""
    assert server.proc is not None
    pid = server.proc.pid

    def whole() -> set[int] | None:
        pids = _workers_of(pid)
        return pids if len(pids) == WORKERS else None

    pids = processes.until(whole, timeout)
    assert pids, f"the server does not have {WORKERS} worker processes:\n{server.log()[-3000:]}"
    return pids


def _kill_leftovers(pids: set[int]) -> None:
    """Workers of a server we killed, if any outlived it (each by its PID)."""
    for pid in pids:
        if processes.alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# -- reading what happened ----------------------------------------------------------------------


def _log_kinds(cwd: Path, execution_id: str) -> list[tuple[str, Any]]:
    """(kind, value) of every event in the execution's durable log, read-only from SQLite."""
    db = cwd / ".flux" / "flux.db"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute(
            "SELECT kind, value FROM execution_events WHERE execution_id = ? ORDER BY seq",
            (execution_id,),
        ).fetchall()
    finally:
        conn.close()
    return rows


def _worker_lost(cwd: Path, execution_id: str) -> int:
    return sum(1 for kind, _ in _log_kinds(cwd, execution_id) if kind == "worker_lost")


def _lines(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line]


def _settled(api: Api, status_url: str, timeout: float = SETTLE) -> dict:
    def done():
        status, body = api.get(status_url, timeout=10)
        assert status == 200, body
        return body if body["state"] not in ("CREATED", "RUNNING") else None

    body = processes.until(done, timeout, step=0.1)
    assert body, f"{status_url} did not settle in {timeout:g} s"
    return body


def _accounted(effects: Path, finals: list[dict], killed: set[int]) -> None:
    """Each completed task's side effect happened once, in the attempt whose result was logged;
    any other attempt of that task is one a killed worker could not log."""
    done = Counter((e, k, int(pid)) for kind, e, k, pid in _lines(effects) if kind == "done")
    for final in finals:
        execution_id = final["execution_id"]
        for result in final["output"]["steps"]:
            key, logged_pid = result.split("@")
            assert done[(execution_id, key, int(logged_pid))] == 1, (final, done)
            others = {
                pid
                for (e, k, pid) in done
                if (e, k) == (execution_id, key) and pid != int(logged_pid)
            }
            assert others <= killed, (final, others, killed)


def _health_time(url: str) -> float:
    started = time.monotonic()
    status, body = processes.http("GET", url + "/health", timeout=5)
    assert status == 200, body
    return time.monotonic() - started


class HealthProbe:
    """/health asked every 0.1 s in a thread while something else happens; the slowest answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.times: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._probe, daemon=True)

    def _probe(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                status, _ = processes.http("GET", self.url + "/health", timeout=5)
                if status != 200:
                    self.failures.append(f"status {status}")
            except OSError as exc:
                self.failures.append(repr(exc))
            self.times.append(time.monotonic() - started)
            self._stop.wait(0.1)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


# -- the shared server --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[processes.FluxProcess]:
    started = _start(tmp_path_factory.mktemp("isolation"))
    try:
        api = Api(started.url)
        api.register(SOURCE, "iso.py")
        api.service("iso", namespaces=["iso"])
        api.service("calm", namespaces=["calm"])
        _warm(api)
        yield started
    except BaseException:
        print(started.log()[-5000:])
        raise
    finally:
        started.stop()


@pytest.fixture(scope="module")
def api(server) -> Api:
    return Api(server.url)


def _warm(api: Api) -> None:
    """Runs started at once go to both workers: each has imported the module after this."""
    accepted = []
    for i in range(2 * WORKERS):
        status, body = api.post("/services/calm/ping/async", {"n": i}, timeout=10)
        assert status == 202, body
        accepted.append(body)
    for body in accepted:
        assert _settled(api, body["status_url"])["state"] == "COMPLETED"


def _calm(api: Api, n: Any, timeout: float = 10.0) -> float:
    """A normal call on another service; how long it took."""
    started = time.monotonic()
    status, body = api.post("/services/calm/ping", {"n": n}, timeout=timeout)
    assert status == 200 and body["pong"] == {"n": n}, body
    return time.monotonic() - started


def _failed_shape(body: Any, error_type: str) -> None:
    assert isinstance(body, dict), body
    assert body["state"] == "FAILED", body
    assert isinstance(body["execution_id"], str) and body["execution_id"], body
    assert body["namespace"] == "iso", body
    assert body["error"]["type"] == error_type, body
    assert isinstance(body["error"]["message"], str), body


# -- BaseException ------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["workflow", "task"])
@pytest.mark.parametrize("what", ["KeyboardInterrupt", "SystemExit", "GeneratorExit", "Escape"])
def test_a_base_exception_fails_the_run_at_once_and_the_worker_survives(server, api, what, where):
    workers = _full_pool(server)
    started = time.monotonic()
    status, body = api.post(
        "/services/iso/raises", {"what": what, "where": where}, timeout=CALL_TIMEOUT
    )
    elapsed = time.monotonic() - started
    assert status == 500, body
    _failed_shape(body, what)
    assert elapsed < PROMPT, f"{what} in the {where}: answered after {elapsed:.1f} s"
    status, stored = api.get(f"/services/iso/raises/status/{body['execution_id']}")
    assert status == 200 and stored["state"] == "FAILED", stored
    assert stored["error"]["type"] == what, stored
    # No worker died for it: the same processes still run, and nothing was marked lost.
    assert _workers_of(server.proc.pid) == workers
    assert _worker_lost(server.cwd, body["execution_id"]) == 0
    assert _calm(api, what) < PROMPT


# -- a worker that dies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("how", "where"), [("exit", "workflow"), ("sigkill", "task"), ("segv", "task")]
)
def test_a_run_that_kills_its_worker_three_times_fails_worker_crashed(
    server, api, tmp_path, how, where
):
    before = _full_pool(server)
    effects, attempts = tmp_path / "effects.log", tmp_path / "attempts.log"
    body = {
        "how": how,
        "where": where,
        "times": 99,
        "delay": 0.0,
        "effects": str(effects),
        "attempts": str(attempts),
    }
    with HealthProbe(server.url) as probe:
        started = time.monotonic()
        status, answer = api.post("/services/iso/dies", body, timeout=CALL_TIMEOUT)
        elapsed = time.monotonic() - started
        assert status == 500, answer
        _failed_shape(answer, "WorkerCrashed")
        assert elapsed < 15.0, f"WorkerCrashed answered after {elapsed:.1f} s"
        # Every death is in the log, and the run was replayed after each but the last.
        execution_id = answer["execution_id"]
        assert _worker_lost(server.cwd, execution_id) == 3
        dead = [int(line[0]) for line in _lines(attempts)]
        assert len(dead) == 3 and len(set(dead)) == 3, dead
        assert dead[0] in before, (dead, before)
        assert not any(processes.alive(pid) for pid in dead)
        # The task that finished before the first death ran once, never again on replay.
        finished = [line for line in _lines(effects) if line[0] == "done"]
        assert len(finished) == 1 and finished[0][1] == execution_id, finished
        status, stored = api.get(f"/services/iso/dies/status/{execution_id}")
        assert status == 200, stored
        _failed_shape(stored, "WorkerCrashed")
        # The pool is whole again within a few seconds, with new processes.
        after = _full_pool(server, timeout=10)
        assert not after & set(dead)
        assert _calm(api, how) < PROMPT
    assert not probe.failures, probe.failures
    assert max(probe.times) < 1.0, max(probe.times)


def test_a_run_whose_worker_dies_once_is_replayed_on_another_and_completes(server, api, tmp_path):
    _full_pool(server)
    effects, attempts = tmp_path / "effects.log", tmp_path / "attempts.log"
    body = {
        "how": "exit",
        "where": "task",
        "times": 1,
        "delay": 0.0,
        "effects": str(effects),
        "attempts": str(attempts),
    }
    status, answer = api.post("/services/iso/dies?detailed=true", body, timeout=CALL_TIMEOUT)
    assert status == 200, answer
    assert answer["state"] == "COMPLETED", answer
    [first, second] = [int(line[0]) for line in _lines(attempts)]
    before_pid = int(answer["output"]["before"].split("@")[1])
    after_pid = int(answer["output"]["after"].split("@")[1])
    assert before_pid == first and after_pid == second and first != second, (answer, first)
    assert not processes.alive(first)
    assert after_pid in _workers_of(server.proc.pid)
    # One death logged; the finished first task was answered from the log on replay.
    kinds = _log_kinds(server.cwd, answer["execution_id"])
    assert [kind for kind, _ in kinds].count("worker_lost") == 1, kinds
    assert [line[0] for line in _lines(effects)] == ["start", "done"]
    _full_pool(server)


# -- a worker that stalls -----------------------------------------------------------------------


def test_an_async_busy_loop_stalls_only_its_worker(server, api):
    _full_pool(server)
    calls: list[float] = []
    with HealthProbe(server.url) as probe:
        started = time.monotonic()
        status, spinning = api.post("/services/iso/spins/async", {}, timeout=10)
        assert status == 202, spinning
        time.sleep(0.5)  # it spins on a worker now

        def settled_while_others_are_served() -> dict | None:
            calls.append(_calm(api, len(calls)))
            status, body = api.get(spinning["status_url"], timeout=10)
            assert status == 200, body
            return body if body["state"] not in ("CREATED", "RUNNING") else None

        final = processes.until(settled_while_others_are_served, 45, step=0.2)
        elapsed = time.monotonic() - started
    assert final, f"the busy loop was still RUNNING after {elapsed:.0f} s"
    _failed_shape(final, "WorkerCrashed")
    assert _worker_lost(server.cwd, final["execution_id"]) == 3
    assert elapsed < 30.0, elapsed
    assert not probe.failures, probe.failures
    assert max(probe.times) < 1.0, f"/health took {max(probe.times):.2f} s during the busy loop"
    # A call that happened to land on the stuck worker waits for it to be replaced; no more.
    assert max(calls) < STALLED_CALL, calls
    assert sorted(calls)[len(calls) // 2] < 1.0, calls  # most went to the other worker at once
    assert len(calls) >= 5, calls
    _full_pool(server)
    assert _calm(api, "after") < PROMPT


# -- a worker killed under load -----------------------------------------------------------------


def test_a_worker_killed_under_load_loses_nothing_and_repeats_no_finished_task(
    server, api, tmp_path
):
    before = _full_pool(server)
    effects = tmp_path / "effects.log"
    n = 3
    accepted = []
    for _ in range(12):
        status, body = api.post(
            "/services/iso/steps/async",
            {"n": n, "seconds": 0.3, "effects": str(effects)},
            timeout=10,
        )
        assert status == 202, body
        accepted.append(body)
    ids = {body["execution_id"] for body in accepted}

    def second_step_started() -> tuple[int, str] | None:
        # `step1` starts only once `step0`'s result is durable: a kill now loses a task in
        # flight, never a finished one.
        for line in _lines(effects):
            if line[0] == "start" and line[1] in ids and line[2] == "step1":
                return int(line[3]), line[1]
        return None

    found = processes.until(second_step_started, SETTLE)
    assert found, "no execution reached its second step"
    victim, interrupted = found
    assert victim in before, (victim, before)  # a worker of our server: ours to kill
    os.kill(victim, signal.SIGKILL)

    finals = [_settled(api, body["status_url"]) for body in accepted]
    assert [final["state"] for final in finals] == ["COMPLETED"] * len(accepted), finals
    for final in finals:
        keys = [result.split("@")[0] for result in final["output"]["steps"]]
        assert keys == [f"step{i}" for i in range(n)], final
    _accounted(effects, finals, killed={victim})
    [output] = [f["output"] for f in finals if f["execution_id"] == interrupted]
    assert output["steps"][0] == f"step0@{victim}", output
    assert all(not result.endswith(f"@{victim}") for result in output["steps"][1:]), output
    assert _worker_lost(server.cwd, interrupted) == 1
    # The killed worker is replaced; the other one never stopped.
    after = _full_pool(server)
    assert victim not in after and (before - {victim}) <= after, (before, after)


# -- the server killed --------------------------------------------------------------------------


def _setup(url: str) -> Api:
    api = Api(url)
    api.register(SOURCE, "iso.py")
    api.service("iso", namespaces=["iso"])
    api.service("calm", namespaces=["calm"])
    return api


def test_a_killed_server_restarts_at_once_finishes_running_and_keeps_paused(tmp_path):
    effects = tmp_path / "effects.log"
    server = _start(tmp_path)
    old_workers: set[int] = set()
    restarted: processes.FluxProcess | None = None
    try:
        api = _setup(server.url)
        status, paused = api.post("/services/iso/approve", {"effects": str(effects)})
        assert status == 202 and paused["state"] == "PAUSED", paused
        running = []
        for _ in range(4):
            status, body = api.post(
                "/services/iso/steps/async",
                {"n": 2, "seconds": 1.0, "effects": str(effects)},
                timeout=10,
            )
            assert status == 202, body
            running.append(body)
        ids = {body["execution_id"] for body in running}

        def midway() -> bool:
            started = {(line[1], line[2]) for line in _lines(effects) if line[0] == "start"}
            return all((i, "step0") in started for i in ids)

        assert processes.until(midway, 10), _lines(effects)
        old_workers = _workers_of(server.proc.pid)
        assert len(old_workers) == WORKERS, old_workers
        server.kill()
        # Its workers lose their link and go: none keeps running workflow code unsupervised.
        gone = processes.until(lambda: not any(processes.alive(pid) for pid in old_workers), 10)
        assert gone, "worker processes outlived their killed server"

        begun = time.monotonic()
        restarted = _start(tmp_path, port=server.port)
        came_up = time.monotonic() - begun
        assert came_up < 10.0, came_up
        assert _health_time(restarted.url) < 1.0
        api = Api(restarted.url)
        # It answered before the recovered runs had run: each still has seconds of work left.
        for body in running:
            status, state = api.get(body["status_url"])
            assert status == 200 and state["state"] == "RUNNING", state

        finals = [_settled(api, body["status_url"]) for body in running]
        assert [final["state"] for final in finals] == ["COMPLETED"] * len(running), finals
        _accounted(effects, finals, killed=old_workers)
        new_workers = _workers_of(restarted.proc.pid)
        for final in finals:
            # The recovered runs were finished by the new server's workers.
            last = int(final["output"]["steps"][-1].split("@")[1])
            assert last not in old_workers and last in new_workers, (final, new_workers)

        status, body = api.get(f"/services/iso/approve/status/{paused['execution_id']}")
        assert status == 200 and body["state"] == "PAUSED", body
        assert body["resume_url"] == paused["resume_url"], body
        status, done = api.post(paused["resume_url"] + "?detailed=true", {"ok": True})
        assert status == 200 and done["state"] == "COMPLETED", done
        assert done["output"]["answer"] == {"ok": True}
        before_lines = [line for line in _lines(effects) if line[1] == paused["execution_id"]]
        assert [line[0] for line in before_lines] == ["start", "done"], before_lines
        assert _calm(api, "restarted") < PROMPT
    except BaseException:
        print(server.log()[-5000:])
        if restarted is not None:
            print(restarted.log()[-5000:])
        raise
    finally:
        server.kill()
        _kill_leftovers(old_workers)
        if restarted is not None:
            restarted.stop()


def test_a_poison_execution_left_running_does_not_stop_the_restarted_server(tmp_path):
    attempts = tmp_path / "attempts.log"
    server = _start(tmp_path)
    old_workers: set[int] = set()
    restarted: processes.FluxProcess | None = None
    try:
        api = _setup(server.url)
        body = {
            "how": "exit",
            "where": "task",
            "times": 99,
            "delay": 1.0,
            "effects": str(tmp_path / "effects.log"),
            "attempts": str(attempts),
        }
        status, poison = api.post("/services/iso/dies/async", body, timeout=10)
        assert status == 202, poison
        execution_id = poison["execution_id"]
        # Killed once already, and RUNNING again on another worker, when the server dies.
        assert processes.until(lambda: _worker_lost(tmp_path, execution_id) == 1, 15)
        status, state = api.get(poison["status_url"])
        assert status == 200 and state["state"] == "RUNNING", state
        old_workers = _workers_of(server.proc.pid)
        server.kill()
        assert processes.until(lambda: not any(processes.alive(pid) for pid in old_workers), 10), (
            "worker processes outlived their killed server"
        )
        deaths_before = len(_lines(attempts))

        begun = time.monotonic()
        restarted = _start(tmp_path, port=server.port)
        assert time.monotonic() - begun < 10.0
        api = Api(restarted.url)
        with HealthProbe(restarted.url) as probe:
            assert _calm(api, "beside the poison", timeout=10) < STALLED_CALL
            final = _settled(api, poison["status_url"])
            assert _calm(api, "after the poison") < PROMPT
        _failed_shape(final, "WorkerCrashed")
        assert _worker_lost(tmp_path, execution_id) == 3
        assert len(_lines(attempts)) <= deaths_before + 2
        assert not probe.failures, probe.failures
        assert max(probe.times) < 1.0, max(probe.times)
        assert restarted.proc.poll() is None
        _full_pool(restarted)
    except BaseException:
        print(server.log()[-5000:])
        if restarted is not None:
            print(restarted.log()[-5000:])
        raise
    finally:
        server.kill()
        _kill_leftovers(old_workers)
        if restarted is not None:
            restarted.stop()
