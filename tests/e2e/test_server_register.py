"""`POST /workflows` (module registration) on a real server."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e import processes

TWO = '''
from flux import ExecutionContext, workflow


@workflow.with_options(namespace="NS_HERE")
async def first(ctx: ExecutionContext):
    """The first one."""
    return "RESULT"


@workflow.with_options(namespace="NS_HERE")
async def second(ctx: ExecutionContext):
    return 2
'''


def _versions(api, ref: str) -> list[int]:
    status, body = api.get(f"/workflows/{ref}")
    assert status == 200, body
    return [info["version"] for info in body["versions"]]


def test_register_answers_201_with_refs_and_versions(api, unique):
    ns = unique("reg")
    status, body = processes.register_source(api.url, TWO.replace("NS_HERE", ns), "two.py")
    assert status == 201, body
    assert sorted(body["workflows"], key=lambda item: item["ref"]) == [
        {"ref": f"{ns}/first", "namespace": ns, "name": "first", "version": 1, "created": True},
        {"ref": f"{ns}/second", "namespace": ns, "name": "second", "version": 1, "created": True},
    ]
    status, listed = api.get(f"/workflows?namespace={ns}")
    assert status == 200
    assert sorted(info["ref"] for info in listed["workflows"]) == [f"{ns}/first", f"{ns}/second"]
    (first,) = [info for info in listed["workflows"] if info["name"] == "first"]
    assert first["description"] == "The first one."
    # What was stored runs.
    assert api.post(f"/workflows/{ns}/first/run", {}) == (200, "RESULT")


def test_the_same_file_twice_adds_no_version_and_a_change_does(api, unique):
    ns = unique("again")
    source = TWO.replace("NS_HERE", ns)
    api.register(source, "two.py")
    status, body = processes.register_source(api.url, source, "two.py")
    assert status == 201, body
    assert {(item["name"], item["version"], item["created"]) for item in body["workflows"]} == {
        ("first", 1, False),
        ("second", 1, False),
    }
    assert _versions(api, f"{ns}/first") == [1]

    changed = api.register(source.replace("RESULT", "CHANGED"), "two.py")
    (first,) = [item for item in changed if item["name"] == "first"]
    assert (first["version"], first["created"]) == (2, True)
    assert _versions(api, f"{ns}/first") == [1, 2]
    assert api.post(f"/workflows/{ns}/first/run", {}) == (200, "CHANGED")


BROKEN = {
    "syntax": ("def broken(:\n    pass\n", "line"),
    "missing import": ("import flux_no_such_module_here\n", "flux_no_such_module_here"),
    "raises on import": ("raise RuntimeError('refusing to load')\n", "refusing to load"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_file_that_does_not_import_is_400_with_the_reason_and_nothing_stored(api, unique, case):
    ns = unique("broken")
    tail, reason = BROKEN[case]
    # The workflow above the breakage must not be stored either.
    source = TWO.replace("NS_HERE", ns) + "\n" + tail
    status, body = processes.register_source(api.url, source, "broken.py")
    assert status == 400, body
    assert body["error"] and reason in body["message"], body
    assert api.get(f"/workflows?namespace={ns}") == (200, {"workflows": []})
    assert api.get(f"/workflows/{ns}/first")[0] == 404


def test_a_file_without_workflows_is_400(api):
    source = "from flux import task\n\n\n@task\nasync def lonely():\n    return 1\n"
    status, body = processes.register_source(api.url, source, "lonely.py")
    assert status == 400, body
    assert body["error"] and "workflow" in body["message"].lower()


def test_a_non_utf8_upload_is_400(api):
    status, body = api.post(
        "/workflows", raw=b"\xff\xfe\x00x = 1", headers={"Content-Type": "text/x-python"}
    )
    assert status == 400, body


def test_an_upload_over_the_limit_is_413_and_nothing_stored(api, unique):
    ns = unique("huge")
    padding = "# " + "x" * 1000 + "\n"
    source = TWO.replace("NS_HERE", ns) + padding * 1100  # > 1 MiB
    status, body = processes.register_source(api.url, source, "huge.py")
    assert status == 413, body
    assert body["error"] == "payload_too_large"
    assert api.get(f"/workflows?namespace={ns}") == (200, {"workflows": []})


def test_a_multipart_upload_registers_too(api, unique):
    ns = unique("multi")
    boundary = uuid.uuid4().hex
    raw = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="multi.py"\r\n'
        "Content-Type: text/x-python\r\n\r\n"
        f"{TWO.replace('NS_HERE', ns)}\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    status, body = api.post(
        "/workflows",
        raw=raw,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert status == 201, body
    assert sorted(item["ref"] for item in body["workflows"]) == [f"{ns}/first", f"{ns}/second"]
