"""The services management API, dynamic resolution and per-service OpenAPI on a real server."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from openapi_spec_validator import validate

WORKFLOW = '''
from pydantic import BaseModel

from flux import ExecutionContext, workflow


class Point(BaseModel):
    x: int
    y: int


@workflow.with_options(namespace="NS_HERE")
async def NAME_HERE(ctx: ExecutionContext):
    """Says which workflow ran."""
    return "NS_HERE/NAME_HERE"


@workflow.with_options(namespace="NS_HERE")
async def NAME_HERE_typed(ctx: ExecutionContext[Point]):
    return ctx.input.x + ctx.input.y
'''

SERVICE_KEYS = {
    "name",
    "namespaces",
    "workflows",
    "exclusions",
    "mcp_enabled",
    "endpoints",
    "collisions",
    "unresolved",
}
ENDPOINT_KEYS = {"name", "ref", "namespace", "version", "input_schema", "description"}


def _register(api, ns: str, name: str) -> None:
    source = WORKFLOW.replace("NS_HERE", ns).replace("NAME_HERE", name)
    api.register(source, f"{ns}_{name}.py")


def _endpoint_names(api, service: str) -> list[str]:
    status, body = api.get(f"/services/{service}")
    assert status == 200, body
    return sorted(endpoint["name"] for endpoint in body["endpoints"])


# -- dynamic resolution -------------------------------------------------------------------------


def test_a_workflow_registered_after_the_service_is_callable_at_once(api, unique):
    ns = unique("late")
    _register(api, ns, "first")
    api.service(ns, namespaces=[ns])
    assert api.post(f"/services/{ns}/first", {}) == (200, f"{ns}/first")
    status, body = api.post(f"/services/{ns}/second", {})
    assert status == 404 and body["error"] == "endpoint_not_found"

    _register(api, ns, "second")
    assert api.post(f"/services/{ns}/second", {}) == (200, f"{ns}/second")
    assert "second" in _endpoint_names(api, ns)


def test_a_deleted_workflow_is_404_on_the_next_request(api, unique):
    ns = unique("gone")
    _register(api, ns, "keep")
    _register(api, ns, "drop")
    api.service(ns, namespaces=[ns])
    assert api.post(f"/services/{ns}/drop", {}) == (200, f"{ns}/drop")

    status, body = api.delete(f"/workflows/{ns}/drop")
    assert status == 200 and body["deleted"] >= 1, body
    status, body = api.post(f"/services/{ns}/drop", {})
    assert status == 404, body
    assert body["error"] == "endpoint_not_found"
    assert api.post(f"/services/{ns}/keep", {}) == (200, f"{ns}/keep")
    assert "drop" not in _endpoint_names(api, ns)

    status, body = api.delete(f"/workflows/{ns}/drop")
    assert status == 404, body


def test_an_excluded_workflow_is_404_until_included_again(api, unique):
    ns = unique("excl")
    _register(api, ns, "tool")
    api.service(ns, namespaces=[ns])
    status, body = api.put(f"/services/{ns}", {"add_exclusions": [f"{ns}/tool"]})
    assert status == 200, body
    status, body = api.post(f"/services/{ns}/tool", {})
    assert status == 404 and body["error"] == "endpoint_not_found"

    status, body = api.put(f"/services/{ns}", {"remove_exclusions": [f"{ns}/tool"]})
    assert status == 200, body
    assert api.post(f"/services/{ns}/tool", {}) == (200, f"{ns}/tool")


def test_a_workflow_selector_names_one_workflow_across_namespaces(api, unique):
    a, b, name = unique("sela"), unique("selb"), unique("picked")
    _register(api, a, "alpha")
    _register(api, b, "beta")
    api.service(name, workflows=[f"{a}/alpha", f"{b}/beta_typed", "default/not_there"])
    assert _endpoint_names(api, name) == ["alpha", "beta_typed"]
    assert api.post(f"/services/{name}/beta_typed", {"x": 1, "y": 2}) == (200, 3)
    status, _ = api.post(f"/services/{name}/beta", {})
    assert status == 404
    status, body = api.get(f"/services/{name}")
    assert body["unresolved"] == ["default/not_there"]


# -- create, list, show -------------------------------------------------------------------------


def test_create_answers_201_and_a_duplicate_409(api, unique):
    ns, name = unique("crns"), unique("create")
    _register(api, ns, "job")
    status, body = api.post(
        "/services",
        {"name": name, "namespaces": [ns], "exclusions": [f"{ns}/job_typed"]},
    )
    assert status == 201, body
    assert SERVICE_KEYS <= set(body)
    assert (body["name"], body["namespaces"], body["exclusions"]) == (
        name,
        [ns],
        [f"{ns}/job_typed"],
    )
    assert body["workflows"] == [] and body["mcp_enabled"] is False
    assert [endpoint["name"] for endpoint in body["endpoints"]] == ["job"]

    status, again = api.post("/services", {"name": name, "namespaces": ["other"]})
    assert status == 409, again
    assert again["error"] == "already_exists" and isinstance(again["message"], str)
    # The first definition is untouched.
    status, shown = api.get(f"/services/{name}")
    assert shown["namespaces"] == [ns]


@pytest.mark.parametrize(
    "body",
    [
        {"name": "Billing"},
        {"name": "-billing"},
        {"name": "bad name"},
        {"name": "b" * 65},
        {"name": ""},
        {"name": 7},
        {"name": "NAME", "namespaces": ["UPPER"]},
        {"name": "NAME", "namespaces": ["ok", "no/slash"]},
        {"name": "NAME", "workflows": ["a/b/c"]},
        {"name": "NAME", "workflows": ["ns/not-an-identifier"]},
        {"name": "NAME", "workflows": ["Bad-NS/x"]},
        {"name": "NAME", "exclusions": ["ns/"]},
        {"name": "NAME", "namespaces": "billing"},
        {"name": "NAME", "mcp_enabled": "yes"},
        {"namespaces": ["billing"]},
    ],
)
def test_a_bad_name_or_ref_is_400_and_nothing_is_stored(api, unique, body):
    name = unique("refused")
    body = {key: (name if value == "NAME" else value) for key, value in body.items()}
    status, answer = api.post("/services", body)
    assert status == 400, answer
    assert isinstance(answer["error"], str) and answer["message"]

    status, listed = api.get("/services")
    assert status == 200
    stored = [service["name"] for service in listed["services"]]
    assert name not in stored
    assert body.get("name") not in stored


def test_malformed_bodies_of_the_management_api_are_400(api, unique):
    name = unique("malformed")
    api.service(name)
    for method, path in (("POST", "/services"), ("PUT", f"/services/{name}")):
        call = api.post if method == "POST" else api.put
        for raw in (b"{nope", b"[]", b""):
            status, body = call(path, raw=raw)
            assert status == 400, (method, raw, body)
            assert body["error"] and body["message"]


def test_list_is_sorted_and_show_has_endpoints_collisions_and_unresolved(api, unique):
    left, right = unique("showl"), unique("showr")
    _register(api, left, "shared")
    _register(api, left, "solo")
    _register(api, right, "shared")
    first, second = unique("zz-show"), unique("aa-show")
    api.service(first, namespaces=[left])
    api.service(second, namespaces=[left, right], workflows=[f"{right}/missing"])

    status, listed = api.get("/services")
    assert status == 200
    names = [service["name"] for service in listed["services"]]
    assert names == sorted(names)
    assert {first, second} <= set(names)

    status, shown = api.get(f"/services/{second}")
    assert status == 200
    assert SERVICE_KEYS <= set(shown)
    assert shown["unresolved"] == [f"{right}/missing"]
    assert sorted(c["name"] for c in shown["collisions"]) == ["shared", "shared_typed"]
    for collision in shown["collisions"]:
        assert sorted(collision["namespaces"]) == sorted([left, right])
    endpoints = {endpoint["name"]: endpoint for endpoint in shown["endpoints"]}
    assert sorted(endpoints) == ["solo", "solo_typed"]
    solo, typed = endpoints["solo"], endpoints["solo_typed"]
    assert ENDPOINT_KEYS <= set(solo)
    assert (solo["ref"], solo["namespace"], solo["version"]) == (f"{left}/solo", left, 1)
    assert solo["description"] == "Says which workflow ran."
    assert set(typed["input_schema"]["properties"]) == {"x", "y"}
    assert sorted(typed["input_schema"]["required"]) == ["x", "y"]


def test_show_of_an_unknown_service_is_404(api):
    status, body = api.get("/services/never-created")
    assert status == 404 and body["error"] == "service_not_found"


# -- update -------------------------------------------------------------------------------------


def test_put_applies_each_of_the_six_fields_and_mcp_enabled(api, unique):
    a, b, name = unique("puta"), unique("putb"), unique("put")
    _register(api, a, "one")
    _register(api, b, "two")
    created = api.service(name)
    assert created["endpoints"] == []

    def put(body):
        status, answer = api.put(f"/services/{name}", body)
        assert status == 200, (body, answer)
        return answer

    body = put({"add_namespaces": [a]})
    assert body["namespaces"] == [a]
    assert sorted(e["name"] for e in body["endpoints"]) == ["one", "one_typed"]

    body = put({"add_workflows": [f"{b}/two"]})
    assert body["workflows"] == [f"{b}/two"]
    assert sorted(e["name"] for e in body["endpoints"]) == ["one", "one_typed", "two"]

    body = put({"add_exclusions": [f"{a}/one_typed"]})
    assert body["exclusions"] == [f"{a}/one_typed"]
    assert sorted(e["name"] for e in body["endpoints"]) == ["one", "two"]

    body = put({"remove_exclusions": [f"{a}/one_typed"]})
    assert body["exclusions"] == []
    assert "one_typed" in [e["name"] for e in body["endpoints"]]

    body = put({"remove_workflows": [f"{b}/two"]})
    assert body["workflows"] == []
    assert "two" not in [e["name"] for e in body["endpoints"]]

    body = put({"remove_namespaces": [a]})
    assert body["namespaces"] == [] and body["endpoints"] == []

    assert api.get(f"/services/{name}/mcp")[0] == 404
    body = put({"mcp_enabled": True})
    assert body["mcp_enabled"] is True
    status, info = api.get(f"/services/{name}/mcp")
    assert status == 200, info
    body = put({"mcp_enabled": False})
    assert body["mcp_enabled"] is False
    assert api.get(f"/services/{name}/mcp")[0] == 404

    # Several fields at once, and the result is what GET shows afterwards.
    body = put({"add_namespaces": [b, a], "add_exclusions": [f"{b}/two_typed"]})
    status, shown = api.get(f"/services/{name}")
    assert (shown["namespaces"], shown["exclusions"]) == (sorted([a, b]), [f"{b}/two_typed"])
    assert shown["endpoints"] == body["endpoints"]


def test_a_refused_put_changes_nothing(api, unique):
    ns, name = unique("putbad"), unique("putbad")
    api.service(name, namespaces=[ns])
    for update in (
        {"add_namespaces": ["Not Valid"]},
        {"add_workflows": [f"{ns}/ok", "bad/ref/here"]},
        {"remove_exclusions": "x/y"},
        {"mcp_enabled": "true"},
        {"rename": "other"},
    ):
        status, body = api.put(f"/services/{name}", update)
        assert status == 400, (update, body)
    status, shown = api.get(f"/services/{name}")
    assert (shown["namespaces"], shown["workflows"], shown["exclusions"]) == ([ns], [], [])
    assert shown["mcp_enabled"] is False

    status, body = api.put("/services/never-created", {"add_namespaces": [ns]})
    assert status == 404 and body["error"] == "service_not_found"


def test_twenty_concurrent_puts_are_all_kept(api, unique):
    name = unique("concurrent")
    api.service(name)
    wanted = [f"{name}-ns{i}" for i in range(20)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(
            pool.map(lambda ns: api.put(f"/services/{name}", {"add_namespaces": [ns]}), wanted)
        )
    assert [status for status, _ in answers] == [200] * 20, answers
    status, shown = api.get(f"/services/{name}")
    assert shown["namespaces"] == sorted(wanted)


# -- delete -------------------------------------------------------------------------------------


def test_delete_removes_the_service_and_its_endpoints(api, unique):
    ns = unique("del")
    _register(api, ns, "job")
    api.service(ns, namespaces=[ns])
    assert api.post(f"/services/{ns}/job", {})[0] == 200

    assert api.delete(f"/services/{ns}") == (200, {"deleted": ns})
    status, body = api.get(f"/services/{ns}")
    assert status == 404 and body["error"] == "service_not_found"
    status, body = api.post(f"/services/{ns}/job", {})
    assert status == 404 and body["error"] == "service_not_found"
    assert ns not in [s["name"] for s in api.get("/services")[1]["services"]]
    status, body = api.delete(f"/services/{ns}")
    assert status == 404 and body["error"] == "service_not_found"
    # The workflows themselves stay registered, and the name can be taken again.
    assert api.get(f"/workflows/{ns}/job")[0] == 200
    api.service(ns, workflows=[f"{ns}/job"])
    assert api.post(f"/services/{ns}/job", {}) == (200, f"{ns}/job")


# -- OpenAPI ------------------------------------------------------------------------------------


def _full_paths(document: dict) -> set[str]:
    """Every path as a caller would request it: the (relative) server URL joined to the path."""
    (server,) = document["servers"]
    return {server["url"].rstrip("/") + path for path in document["paths"]}


def test_openapi_document_validates_and_names_every_endpoint(api, unique):
    a, b, name = unique("oaa"), unique("oab"), unique("openapi")
    _register(api, a, "alpha")
    _register(api, b, "beta")
    api.service(name, namespaces=[a], workflows=[f"{b}/beta_typed"])

    status, document = api.get(f"/services/{name}/openapi.json")
    assert status == 200, document
    validate(document)
    assert document["openapi"].startswith("3.1")
    endpoints = _endpoint_names(api, name)
    assert endpoints == ["alpha", "alpha_typed", "beta_typed"]
    assert _full_paths(document) >= {f"/services/{name}/{endpoint}" for endpoint in endpoints}

    # The typed input is described with its fields (possibly behind a $ref).
    operation = document["paths"]["/beta_typed"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert set(schema["properties"]) == {"x", "y"}

    # It follows the catalog like the endpoints do.
    _register(api, a, "gamma")
    status, document = api.get(f"/services/{name}/openapi.json")
    validate(document)
    assert f"/services/{name}/gamma" in _full_paths(document)

    status, body = api.get("/services/never-created/openapi.json")
    assert status == 404
