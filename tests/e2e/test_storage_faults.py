"""Storage faults with real processes: a server's SQLite file locked by another process, a full
disk, and a second server on the same file (SPEC §9, §11)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.e2e import processes

BUSY_TIMEOUT = 5.0  # the SQLite adapter's busy_timeout
SOURCE = """
import asyncio

from flux import ExecutionContext, task, workflow


@task
async def nap(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@workflow.with_options(namespace="faults")
async def quick(ctx: ExecutionContext):
    return {"ok": True}


@workflow.with_options(namespace="faults")
async def lengthy(ctx: ExecutionContext):
    await nap(ctx.input["seconds"])
    return "finished"
"""

# Another process holding the server's database: BEGIN EXCLUSIVE until told to let go.
_LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
print("released", flush=True)
"""


def _database(cwd: Path) -> Path:
    return cwd / ".flux" / "flux.db"


def _setup(url: str) -> None:
    assert processes.register_source(url, SOURCE, "faults.py")[0] == 201
    status, body = processes.http(
        "POST", url + "/services", {"name": "faults", "namespaces": ["faults"]}
    )
    assert status == 201, body


def _assert_unavailable(status: int, body: dict, reason: str) -> None:
    assert body["error"] == "storage_unavailable", body
    assert body["reason"] == reason, body
    assert status == 503, body


def test_a_database_locked_by_another_process_is_503_busy_then_recovers(tmp_path):
    server = processes.start_server(tmp_path)
    locker = None
    try:
        _setup(server.url)
        locker = subprocess.Popen(
            [sys.executable, "-c", _LOCKER, str(_database(tmp_path))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert locker.stdout.readline().strip() == "locked"

        started = time.monotonic()
        status, body = processes.http("POST", server.url + "/services", {"name": "other"})
        assert time.monotonic() - started < BUSY_TIMEOUT + 3
        assert "execution_id" not in body
        _assert_unavailable(status, body, "busy")

        status, health = processes.http("GET", server.url + "/health")
        assert (status, health["database"]) == (503, "read-only")

        status, body = processes.http("POST", server.url + "/services/faults/quick", {})
        _assert_unavailable(status, body, "busy")

        locker.stdin.write("\n")
        locker.stdin.flush()
        assert locker.stdout.readline().strip() == "released"
        assert processes.http("POST", server.url + "/services", {"name": "other"})[0] == 201
        assert processes.http("GET", server.url + "/health")[0] == 200
        status, body = processes.http("POST", server.url + "/services/faults/quick", {})
        assert (status, body) == (200, {"ok": True})
    finally:
        if locker is not None and locker.poll() is None:
            locker.kill()
            locker.wait(timeout=10)
        server.stop()


@contextlib.contextmanager
def _small_tmpfs(path: Path, size: str = "4m"):
    """A tmpfs of `size` mounted on `path`, unmounted after; skips the test when this machine
    does not let us mount one."""
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command: the full-disk case needs a small tmpfs")
    tried = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if tried.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({tried.stderr.strip() or tried.returncode})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _fill(directory: Path) -> Path:
    """Write a file until the file system is full; the file, to delete for room again."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 1 << 10, 1):  # big chunks, then the last few bytes too
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_is_503_full_on_writes_and_health_says_read_only(tmp_path):
    with _small_tmpfs(tmp_path / "disk") as disk:
        database = disk / "flux.db"
        port = processes.free_port()
        server = processes.FluxProcess(
            [
                "start",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--database-url",
                f"sqlite:///{database}",
            ],
            tmp_path,
            port,
        ).start()
        try:
            _setup(server.url)
            assert processes.http("POST", server.url + "/services/faults/quick", {})[0] == 200
            filler = _fill(disk)
            try:
                for _ in range(3):
                    status, body = processes.http(
                        "POST", server.url + "/services", {"name": f"s{uuid.uuid4().hex[:8]}"}
                    )
                    _assert_unavailable(status, body, "full")
                    # A run: its execution cannot be stored, and the answer says which one.
                    status, body = processes.http("POST", server.url + "/services/faults/quick", {})
                    _assert_unavailable(status, body, "full")
                    assert body.get("execution_id"), body
                status, health = processes.http("GET", server.url + "/health")
                assert (status, health["database"]) == (503, "read-only")
            finally:
                filler.unlink()
            assert processes.http("GET", server.url + "/health")[0] == 200
            assert processes.http("POST", server.url + "/services", {"name": "after"})[0] == 201
            status, body = processes.http("POST", server.url + "/services/faults/quick", {})
            assert (status, body) == (200, {"ok": True})
        finally:
            server.stop()


def test_a_second_server_on_the_same_database_is_refused_and_touches_nothing(tmp_path):
    first = processes.start_server(tmp_path)
    try:
        _setup(first.url)
        status, running = processes.http(
            "POST", first.url + "/services/faults/lengthy/async", {"seconds": 4}
        )
        assert status == 202, running
        execution_id = running["execution_id"]
        assert processes.until(lambda: _state(tmp_path, execution_id) == "RUNNING", 10)
        events_before = _events(tmp_path, execution_id)

        second_port = processes.free_port()
        started = time.monotonic()
        second = subprocess.run(
            processes.flux_command(
                "start", "server", "--host", "127.0.0.1", "--port", str(second_port)
            ),
            cwd=tmp_path,
            env=processes.child_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert time.monotonic() - started < 30
        assert second.returncode != 0
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert str(first.proc.pid) in lines[-1], second.stderr
        assert "in use" in lines[-1]
        assert len(lines) == 1, second.stderr

        # The first server's execution went on untouched: not recovered, not re-run.
        assert _events(tmp_path, execution_id) == events_before
        assert _state(tmp_path, execution_id) == "RUNNING"
        status, body = processes.http(
            "GET", f"{first.url}/services/faults/lengthy/status/{execution_id}"
        )
        assert status == 200 and body["state"] == "RUNNING"
        assert processes.until(lambda: _state(tmp_path, execution_id) == "COMPLETED", 20)
        kinds = [kind for kind, _ in _events(tmp_path, execution_id)]
        assert kinds.count("task_completed") == 1 and "worker_lost" not in kinds
    finally:
        first.stop()


def _read(cwd: Path, sql: str, params: tuple) -> list[tuple]:
    db = sqlite3.connect(f"file:{_database(cwd)}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def _state(cwd: Path, execution_id: str) -> str | None:
    found = _read(cwd, "SELECT state FROM executions WHERE id = ?", (execution_id,))
    return found[0][0] if found else None


def _events(cwd: Path, execution_id: str) -> list[tuple[str, object]]:
    found = _read(
        cwd,
        "SELECT kind, value FROM execution_events WHERE execution_id = ? ORDER BY seq",
        (execution_id,),
    )
    return [(kind, None if value is None else json.loads(value)) for kind, value in found]


def test_the_lock_file_names_the_server_and_is_left_free_by_a_killed_one(tmp_path):
    server = processes.start_server(tmp_path)
    lock = Path(f"{_database(tmp_path)}.lock")
    try:
        assert lock.read_text().strip() == str(server.proc.pid)
        server.kill()
        assert os.path.exists(lock)  # kill -9 leaves the file, never the lock
        restarted = processes.start_server(tmp_path, port=server.port)
        try:
            assert lock.read_text().strip() == str(restarted.proc.pid)
        finally:
            restarted.stop()
    finally:
        server.kill()
