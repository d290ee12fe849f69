"""A run that had to be given to a worker which had already stopped answering (the only one
there was) is not blamed when that worker is killed for it: on a server with one worker process,
a normal call made while a busy loop holds the worker completes once the loop's run has failed
`WorkerCrashed`, instead of failing with it."""

from __future__ import annotations

import time

from tests.e2e import processes
from tests.e2e.conftest import Api
from tests.e2e.test_isolation import SOURCE, _settled, _worker_lost


def test_a_call_given_to_a_stuck_worker_is_not_counted_against_its_death(tmp_path):
    port = processes.free_port()
    args = ["start", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    server = processes.FluxProcess(args, tmp_path, port).start(timeout=30)
    try:
        api = Api(server.url)
        api.register(SOURCE, "iso.py")
        api.service("iso", namespaces=["iso"])
        api.service("calm", namespaces=["calm"])
        status, body = api.post("/services/calm/ping", {"n": "warm"}, timeout=30)
        assert status == 200, body
        status, spinning = api.post("/services/iso/spins/async", {}, timeout=10)
        assert status == 202, spinning
        time.sleep(2.0)  # past a missed renewal: the only worker is late, and gets the next run
        status, calm = api.post("/services/calm/ping/async", {"n": 1}, timeout=10)
        assert status == 202, calm
        spun = _settled(api, spinning["status_url"], timeout=60)
        assert spun["state"] == "FAILED" and spun["error"]["type"] == "WorkerCrashed", spun
        answered = _settled(api, calm["status_url"], timeout=30)
        assert answered["state"] == "COMPLETED", answered
        assert answered["output"]["pong"] == {"n": 1}, answered
        assert _worker_lost(tmp_path, calm["execution_id"]) < 3
    except BaseException:
        print(server.log()[-5000:])
        raise
    finally:
        server.stop()
