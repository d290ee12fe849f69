"""Finding executions end to end (SPEC §9): `GET /executions` and `GET /executions/{id}` of a
real `flux start server`, their filters and pages over a few hundred executions, bad queries,
auth (a key sees only what it may run), and `flux execution list|show|cancel|events`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.e2e import processes

SOURCE = """
from flux import ExecutionContext, pause, task, workflow


@task
async def double(n: int) -> int:
    return 2 * n


@workflow.with_options(namespace="shop")
async def order(ctx: ExecutionContext):
    return {"doubled": await double(ctx.input["n"])}


@workflow.with_options(namespace="shop")
async def held(ctx: ExecutionContext):
    return {"answer": await pause("go")}


@workflow.with_options(namespace="shop")
async def broken(ctx: ExecutionContext):
    raise ValueError("no")


@workflow
async def hello(ctx: ExecutionContext):
    return "hi"
"""

MANY = 240  # executions of shop/order, started by ref, plus those below


@pytest.fixture(scope="module")
def world(api) -> dict[str, list[str]]:
    """The executions the tests find: ids by kind, in creation order."""
    api.register(SOURCE, "shop.py")
    api.service("storefront", namespaces=["shop"])
    started: dict[str, list[str]] = {"order": [], "via_service": [], "held": [], "broken": []}

    def start(path: str, body: object) -> str:
        status, answer, headers = processes.exchange("POST", api.url + path, body)
        assert status in (200, 202, 500), answer
        return headers["Flux-Execution-Id"]

    with ThreadPoolExecutor(8) as pool:
        paths = [("/workflows/shop/order/run/async", {"n": n}) for n in range(MANY)]
        started["order"] = list(pool.map(lambda args: start(*args), paths))
    started["via_service"] = [start("/services/storefront/order", {"n": n}) for n in range(5)]
    started["held"] = [start("/services/storefront/held", {}) for _ in range(3)]
    started["broken"] = [start("/workflows/shop/broken/run", {}) for _ in range(2)]
    started["hello"] = [start("/workflows/default/hello/run", None)]
    all_done = processes.until(lambda: _unfinished(api) == 0, 30)
    assert all_done, "the async orders did not finish"
    return started


def _unfinished(api) -> int:
    status, body = api.get("/executions?" + urlencode({"state": ["CREATED", "RUNNING"]}, True))
    assert status == 200, body
    return len(body["executions"])


def listing(api, limit: int = 50, **query) -> list[dict]:
    """Every page of a listing (bounded): its items in order."""
    found: list[dict] = []
    params = {**query, "limit": limit}
    for _ in range(200):
        status, body = api.get("/executions?" + urlencode(params, doseq=True))
        assert status == 200, body
        assert len(body["executions"]) <= limit
        found += body["executions"]
        if body["next_cursor"] is None:
            return found
        params["cursor"] = body["next_cursor"]
    raise AssertionError("the listing did not end")


def ids(items: list[dict]) -> list[str]:
    return [item["execution_id"] for item in items]


def test_every_page_of_a_few_hundred_repeats_and_skips_nothing(api, world):
    everything = listing(api, limit=37)
    wanted = {i for kind in world.values() for i in kind}
    assert len(ids(everything)) == len(set(ids(everything)))
    assert wanted <= set(ids(everything))
    times = [(item["created_at"], item["execution_id"]) for item in everything]
    assert times == sorted(times, reverse=True)  # newest first, ties by id


def test_each_filter_keeps_what_it_names(api, world):
    orders = listing(api, limit=500, workflow="shop/order")
    assert set(ids(orders)) == set(world["order"] + world["via_service"])
    assert {item["state"] for item in orders} == {"COMPLETED"}
    assert set(ids(listing(api, service="storefront"))) == set(world["via_service"] + world["held"])
    assert set(ids(listing(api, workflow="hello"))) == set(world["hello"])  # bare name: default
    assert set(ids(listing(api, namespace="default"))) == set(world["hello"])
    paused_or_failed = listing(api, state=["PAUSED", "FAILED"], namespace="shop")
    assert set(ids(paused_or_failed)) == set(world["held"] + world["broken"])
    combined = listing(api, service="storefront", state="PAUSED", workflow="shop/held")
    assert set(ids(combined)) == set(world["held"])
    assert listing(api, service="storefront", workflow="shop/broken") == []


def test_an_item_is_the_detailed_shape_with_version_times_and_service(api, world):
    [item] = listing(api, workflow="shop/held", limit=1)[:1]
    assert item["state"] == "PAUSED" and item["service"] == "storefront"
    assert item["status_url"] == f"/workflows/shop/held/status/{item['execution_id']}"
    assert item["resume_url"].startswith("/workflows/shop/held/resume/")
    assert item["version"] == 1
    assert item["created_at"].endswith("Z") and item["updated_at"] >= item["created_at"]
    status, by_status = api.get(item["status_url"])
    assert status == 200 and by_status["state"] == "PAUSED"
    [failed] = listing(api, workflow="shop/broken", limit=1)[:1]
    assert failed["error"]["type"] == "ValueError" and "service" not in failed


def test_show_adds_the_input_and_the_log(api, world):
    execution_id = world["order"][7]
    status, body = api.get(f"/executions/{execution_id}")
    assert status == 200, body
    assert body["input"] == {"n": 7} and body["output"] == {"doubled": 14}
    events = body["events"]
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert {"id", "type", "key", "value", "at"} <= set(events[0])
    completed = [e for e in events if e["type"] == "task_completed"]
    assert completed and completed[0]["value"] == 14 and completed[0]["at"].endswith("Z")


@pytest.mark.parametrize(
    "query",
    [
        "state=DONE",
        "workflow=a/b/c",
        "namespace=Not%20One",
        "limit=0",
        "limit=501",
        "limit=ten",
        "cursor=bogus",
        "sort=asc",
        "limit=5&limit=6",
    ],
)
def test_a_bad_query_is_a_400_naming_it(api, query):
    status, body = api.get(f"/executions?{query}")
    assert status == 400, body
    assert body["error"] == "invalid_request" and body["parameter"] in query


def test_an_unknown_execution_is_404(api):
    status, body = api.get("/executions/no-such-execution")
    assert status == 404 and body["error"] == "execution_not_found"


# -- the CLI -----------------------------------------------------------------------------------


def flux(server, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        processes.flux_command(*args, "--server-url", server.url),
        env=processes.child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_list_filters_and_pages(flux_server, world):
    done = flux(flux_server, "execution", "list", "--workflow", "shop/broken", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert set(ids(json.loads(done.stdout)["executions"])) == set(world["broken"])
    done = flux(flux_server, "execution", "list", "--state", "paused", "--limit", "2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["EXECUTION", "WORKFLOW", "VERSION", "STATE", "SERVICE", "CREATED"]
    assert len(lines) == 1 + 2 + 1
    assert lines[-1].startswith("More: flux execution list --limit 2 --state PAUSED --cursor ")
    cursor = lines[-1].rsplit(" ", 1)[1]
    done = flux(flux_server, "execution", "list", "--state", "PAUSED", "--cursor", cursor)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 1 + 1


def test_cli_errors_are_one_line_and_non_zero(flux_server):
    done = flux(flux_server, "execution", "list", "--cursor", "bogus")
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "cursor" in done.stderr
    done = flux(flux_server, "execution", "show", "nope")
    assert done.returncode == 1 and "not found" in done.stderr


def test_cli_show_prints_the_execution_and_its_events(flux_server, world):
    done = flux(flux_server, "execution", "show", world["order"][3], "--events")
    assert done.returncode == 0, done.stderr
    assert "State: COMPLETED" in done.stdout and 'Input: {"n": 3}' in done.stdout
    assert "task_completed" in done.stdout and "Events:" in done.stdout


def test_cli_cancel_takes_just_the_id(flux_server, api):
    status, held = api.post("/workflows/shop/held/run", {})
    assert status == 202 and held["state"] == "PAUSED"
    done = flux(flux_server, "execution", "cancel", held["execution_id"], "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "CANCELLED"
    done = flux(flux_server, "execution", "cancel", "shop/held", held["execution_id"])
    assert done.returncode == 0 and "CANCELLED" in done.stdout  # the old REF ID form


def test_cli_events_prints_each_event_as_a_json_line_and_ends(flux_server, world):
    done = flux(flux_server, "execution", "events", world["order"][0])
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines and all(set(line) == {"id", "event", "data"} for line in lines)
    assert lines[-1]["event"] == "state" and lines[-1]["data"]["state"] == "COMPLETED"


# -- auth --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secured(tmp_path_factory) -> Iterator[tuple[processes.FluxProcess, dict[str, str]]]:
    cwd: Path = tmp_path_factory.mktemp("listing-auth")
    (cwd / "flux.toml").write_text("[flux.security.auth]\nenabled = true\n")
    grants = {"admin": ["admin", "*"], "shop": ["workflow:shop:*"], "none": ["metrics"]}
    keys = {}
    for name, permissions in grants.items():
        args = ["auth", "key", "create", name]
        for permission in permissions:
            args += ["--permission", permission]
        done = subprocess.run(
            processes.flux_command(*args),
            cwd=cwd,
            env=processes.child_env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        keys[name] = done.stdout.strip()
    server = processes.start_server(cwd)
    try:
        yield server, keys
    finally:
        server.stop()


def test_with_auth_a_key_sees_only_what_it_may_run(secured):
    server, keys = secured

    def call(method: str, path: str, key: str, body: object = None) -> tuple[int, object]:
        headers = {"Authorization": f"Bearer {keys[key]}"}
        return processes.http(method, server.url + path, body, headers=headers)

    status, body = processes.http(
        "POST",
        server.url + "/workflows?filename=shop.py",
        raw=SOURCE.encode(),
        headers={"Authorization": f"Bearer {keys['admin']}", "Content-Type": "text/x-python"},
    )
    assert status == 201, body
    shop = [
        call("POST", "/workflows/shop/order/run?detailed=true", "admin", {"n": n})[1]
        for n in range(60)
    ]
    other = [
        call("POST", "/workflows/default/hello/run?detailed=true", "admin")[1] for _ in range(70)
    ]
    shop_ids = {item["execution_id"] for item in shop}  # type: ignore[index]
    other_ids = [item["execution_id"] for item in other]  # type: ignore[index]

    seen: list[str] = []
    params: dict[str, object] = {"limit": 25}
    for _ in range(50):
        status, page = call("GET", "/executions?" + urlencode(params), "shop")
        assert status == 200, page
        seen += ids(page["executions"])  # type: ignore[index]
        if page["next_cursor"] is None:  # type: ignore[index]
            break
        params["cursor"] = page["next_cursor"]  # type: ignore[index]
    assert set(seen) == shop_ids and len(seen) == len(shop_ids)

    status, body = call("GET", f"/executions/{other_ids[0]}", "shop")
    assert status == 404, body
    status, body = call("GET", f"/executions/{next(iter(shop_ids))}", "shop")
    assert status == 200 and body["namespace"] == "shop"  # type: ignore[index]
    status, body = call("GET", "/executions?namespace=default", "shop")
    assert status == 200 and body == {"executions": [], "next_cursor": None}
    status, body = call("GET", "/executions", "none")
    assert status == 200 and body == {"executions": [], "next_cursor": None}
    status, body = call("GET", "/executions?limit=500", "admin")
    assert status == 200 and len(body["executions"]) == 130  # type: ignore[index]
    status, body = processes.http("GET", server.url + "/executions")
    assert status == 401
