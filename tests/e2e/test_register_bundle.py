"""A bundle registered over HTTP: several files in one multipart request, on a real server."""

from __future__ import annotations

import textwrap
import uuid
from typing import Any

from tests.e2e import processes

BILLING = textwrap.dedent(
    """
    from pydantic import BaseModel
    from flux import ExecutionContext, task, workflow
    from helpers import vat
    from pkg.labels import label


    class Invoice(BaseModel):
        amount: float


    @task
    async def total(amount: float) -> float:
        return vat(amount)


    @workflow.with_options(namespace="NS_HERE")
    async def invoice(ctx: ExecutionContext[Invoice]):
        return label(await total(ctx.input.amount))
    """
)

HELPERS = "RATE = 1.2\n\n\ndef vat(amount):\n    return round(amount * RATE, 2)\n"
LABELS = "def label(total):\n    return f'total: {total}'\n"


def _multipart(files: dict[str, str]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b""
    for name, text in files.items():
        body += (
            (
                f"--{boundary}\r\n"
                f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
                "Content-Type: text/x-python\r\n\r\n"
            ).encode()
            + text.encode()
            + b"\r\n"
        )
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def register_bundle(url: str, files: dict[str, str]) -> tuple[int, Any]:
    body, ctype = _multipart(files)
    return processes.http("POST", f"{url}/workflows", raw=body, headers={"Content-Type": ctype})


def _files(ns: str, rate: str = "1.2") -> dict[str, str]:
    return {
        "billing.py": BILLING.replace("NS_HERE", ns),
        "helpers.py": HELPERS.replace("1.2", rate),
        "pkg/labels.py": LABELS,
    }


def test_a_bundle_registers_runs_gets_a_version_per_helper_change_and_survives_a_restart(
    tmp_path,
):
    ns = "bundles"
    server = processes.start_server(tmp_path)
    try:
        status, body = register_bundle(server.url, _files(ns))
        assert status == 201, body
        assert [(w["ref"], w["version"], w["created"]) for w in body["workflows"]] == [
            (f"{ns}/invoice", 1, True)
        ]
        status, _ = processes.http(
            "POST", f"{server.url}/services", {"name": "shop", "namespaces": [ns]}
        )
        assert status == 201
        call = f"{server.url}/services/shop/invoice"
        assert processes.http("POST", call, {"amount": 10}) == (200, "total: 12.0")

        # The same files again (in another order): nothing new.
        again = dict(reversed(list(_files(ns).items())))
        status, body = register_bundle(server.url, again)
        assert (status, body["workflows"][0]["version"], body["workflows"][0]["created"]) == (
            201,
            1,
            False,
        )
        # Only a helper changed: the workflow gets a new version, and runs it.
        status, body = register_bundle(server.url, _files(ns, rate="1.5"))
        assert (status, body["workflows"][0]["version"]) == (201, 2), body
        assert processes.http("POST", call, {"amount": 10}) == (200, "total: 15.0")
        assert processes.http("POST", f"{call}?version=1", {"amount": 10}) == (200, "total: 12.0")
    finally:
        server.stop()

    restarted = processes.start_server(tmp_path, port=server.port)
    try:
        call = f"{restarted.url}/services/shop/invoice"
        assert processes.http("POST", call, {"amount": 10}) == (200, "total: 15.0")
        assert processes.http("POST", f"{call}?version=1", {"amount": 2}) == (200, "total: 2.4")
    finally:
        restarted.stop()


def test_bad_bundles_are_400_with_the_reason_and_store_nothing(api, unique):
    ns = unique("badbundle")
    files = _files(ns)
    cases = {
        "../escape.py": "bad file name",
        "/abs.py": "is absolute",
        "notes.txt": "bad file name",
    }
    for name, reason in cases.items():
        status, body = register_bundle(api.url, {**files, name: "X = 1\n"})
        assert status == 400, (name, body)
        assert reason in body["message"], body
    # A helper missing from the bundle: the import fails, as it does for a lone file.
    status, body = register_bundle(api.url, {"billing.py": files["billing.py"]})
    assert status == 400 and "No module named 'helpers'" in body["message"], body
    status, body = register_bundle(api.url, {"a.py": "import b\n", "b.py": "X = 1\n"})
    assert status == 400 and "defines no workflow" in body["message"], body
    too_many = {f"m{i}.py": "" for i in range(101)}
    status, body = register_bundle(api.url, too_many)
    assert status == 400 and "at most 100 files" in body["message"], body
    status, body = api.get(f"/workflows?namespace={ns}")
    assert (status, body["workflows"]) == (200, [])


def test_one_file_in_a_form_is_a_plain_module_as_before(api, unique):
    ns = unique("lone")
    source = "from flux import workflow\n\n@workflow.with_options(namespace='NS')\n"
    source = source.replace("NS", ns) + "async def lone(ctx):\n    return 'alone'\n"
    status, body = register_bundle(api.url, {"lone.py": source})
    assert status == 201, body
    # The same module sent raw is the same version: one file is stored as its source.
    status, body = processes.register_source(api.url, source, "lone.py")
    assert (status, body["workflows"][0]["version"], body["workflows"][0]["created"]) == (
        201,
        1,
        False,
    )
    assert api.post(f"/workflows/{ns}/lone/run", {}) == (200, "alone")
