"""Idempotency-Key end to end on servers of their own: keys kept across kill -9 and a restart,
a key claimed by a server that died before storing its execution, and keys per principal with
auth on. The workflows and helpers are test_idempotency.py's."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
import uuid
from pathlib import Path

from adapters.storage.sqlite import SqliteStorage
from core.idempotency import fingerprint, principal_identity
from core.permissions import EVERYONE
from tests.e2e import processes
from tests.e2e.test_idempotency import BASE, REPLAYED, call, lines, new_key, setup_service

# -- restarts ---------------------------------------------------------------------------------


def _claim_while_stopped(cwd: Path, key: str, print_: str, execution_id: str) -> None:
    """What a server that died between claiming a key and storing its execution leaves."""

    async def claim() -> None:
        storage = await SqliteStorage.open(cwd / ".flux" / "flux.db")
        try:
            claimed = await storage.idempotency.claim(
                principal_identity(EVERYONE),
                key,
                print_,
                execution_id,
                now=time.time(),
                window=86_400,
            )
            assert claimed.won
        finally:
            await storage.close()

    asyncio.run(claim())


def test_keys_survive_kill_9_and_a_claim_without_its_execution_is_run_then(tmp_path):
    first_server = processes.start_server(tmp_path)
    try:
        setup_service(first_server.url)
        out, key = tmp_path / "crash.txt", new_key()
        done = call(first_server.url, f"{BASE}/tally", {"path": str(out)}, key)
        assert done[0] == 200
        status, paused = processes.http(
            "POST", f"{first_server.url}{BASE}/approval", {"path": str(out)}
        )
        assert status == 202
        first_server.kill()
    except BaseException:
        first_server.kill()
        raise

    # Left behind by a server killed right after claiming: a run's key, and a resume's key.
    lost_run, lost_id = new_key(), uuid.uuid4().hex
    run_body = {"path": str(out), "line": "lost"}
    run_print = fingerprint("run", "service:idem/tally", run_body)
    _claim_while_stopped(tmp_path, lost_run, run_print, lost_id)
    lost_resume, resumed_id = new_key(), paused["execution_id"]
    resume_print = fingerprint("resume", "service:idem/approval", "yes", execution_id=resumed_id)
    _claim_while_stopped(tmp_path, lost_resume, resume_print, resumed_id)

    restarted = processes.start_server(tmp_path, port=first_server.port)
    try:
        again = call(restarted.url, f"{BASE}/tally", {"path": str(out)}, key)
        assert again[:2] == done[:2] and again[2][REPLAYED] == "true", again
        assert again[2]["Flux-Execution-Id"] == done[2]["Flux-Execution-Id"]

        ran = call(restarted.url, f"{BASE}/tally?detailed=true", run_body, lost_run)
        assert ran[0] == 200 and ran[1]["execution_id"] == lost_id, ran
        assert ran[2][REPLAYED] == "true"

        resume = f"{BASE}/approval/resume/{resumed_id}?detailed=true"
        finished = call(restarted.url, resume, "yes", lost_resume)
        assert finished[0] == 200 and finished[1]["output"] == {"answer": "yes"}, finished
        assert call(restarted.url, resume, "yes", lost_resume)[1] == finished[1]
        assert lines(out) == 3  # the first run, the lost run, the lost resume: once each
    finally:
        restarted.stop()


# -- auth -------------------------------------------------------------------------------------


def _flux(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        processes.flux_command(*args),
        cwd=cwd,
        env=processes.child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _api_key(cwd: Path, name: str, permission: str) -> dict[str, str]:
    done = _flux(cwd, "auth", "key", "create", name, "--permission", permission)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"flux_[A-Za-z0-9_-]{40,}", done.stdout.strip()), done.stdout
    return {"Authorization": f"Bearer {done.stdout.strip()}"}


def test_with_auth_on_keys_are_per_principal(tmp_path):
    (tmp_path / "flux.toml").write_text("[flux.security.auth]\nenabled = true\n")
    admin = _api_key(tmp_path, "admin", "admin")
    alice = _api_key(tmp_path, "alice", "workflow:idem:*")
    bob = _api_key(tmp_path, "bob", "workflow:idem:*")
    secured = processes.start_server(tmp_path)
    try:
        setup_service(secured.url, admin)
        out, key = tmp_path / "auth.txt", new_key()
        body = {"path": str(out)}
        path = f"{BASE}/tally?detailed=true"
        by_alice = call(secured.url, path, body, key, **alice)
        by_bob = call(secured.url, path, body, key, **bob)
        assert by_alice[0] == by_bob[0] == 200, (by_alice, by_bob)
        assert by_alice[1]["execution_id"] != by_bob[1]["execution_id"]
        assert REPLAYED not in by_bob[2]
        again = call(secured.url, path, body, key, **alice)
        assert again[2][REPLAYED] == "true"
        assert again[1]["execution_id"] == by_alice[1]["execution_id"]
        assert call(secured.url, path, body, key)[0] == 401  # no credentials: nothing replayed
        assert lines(out) == 2
    finally:
        secured.stop()
