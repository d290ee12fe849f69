"""Embedding the project as a library, as docs/embedding.md shows it: the examples run as real
programs and answer what the page says."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.e2e import processes

EXAMPLES = processes.ROOT / "examples"


def test_the_pure_core_resolves_and_generates_on_its_own():
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "embed_core.py")],
        capture_output=True,
        text=True,
        timeout=60,
        env=processes.child_env(),
        check=True,
    )
    summary = json.loads(done.stdout)
    assert summary["endpoints"] == {"invoice": "billing/invoice v2"}
    assert summary["collisions"] == {"report": ["analytics", "billing"]}
    assert "/invoice/status/{execution_id}" in summary["openapi_paths"]
    assert "status_invoice" in summary["mcp_tools"] and "refund" not in summary["mcp_tools"]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("shop")
    port = processes.free_port()
    command = [
        sys.executable,
        str(EXAMPLES / "embed_aiohttp.py"),
        "--port",
        str(port),
        "--database",
        str(cwd / "shop.db"),
    ]
    app = processes.FluxProcess([], cwd, port, command=command).start()
    try:
        yield app
    finally:
        app.stop()


def test_an_own_route_calls_the_use_case_directly(shop):
    status, body = processes.http(
        "POST", f"{shop.url}/shop/checkout", {"customer_id": "C-1", "amount": 100}
    )
    assert status == 200, body
    assert body["invoice"]["total"] == 120.0


def test_the_mounted_routes_answer_under_the_prefix(shop):
    base = f"{shop.url}/flux/services/billing/invoice"
    status, body = processes.http("POST", base + "/async", {"customer_id": "C-2", "amount": 10})
    assert status == 202, body
    assert body["status_url"].startswith("/flux/services/billing/invoice/status/")

    def completed():
        _, answer = processes.http("GET", shop.url + body["status_url"])
        return answer if answer["state"] == "COMPLETED" else None

    assert processes.until(completed, timeout=10)["output"]["total"] == 12.0
    status, _ = processes.http("GET", f"{shop.url}/flux/health")
    assert status == 200


def test_bad_input_through_the_use_case_is_refused_before_anything_runs(shop):
    status, body = processes.http("POST", f"{shop.url}/shop/checkout", {"amount": "x"})
    assert status == 400 and "refused" in body
