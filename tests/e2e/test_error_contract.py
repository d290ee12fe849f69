"""One error contract for both servers: a call that fails answers the same status and the same
JSON body on the main server (`/services/{service}/{name}`) and on a standalone process of that
service (`/{name}`), whichever of them decides it."""

from __future__ import annotations

import pytest

from tests.e2e import processes

SERVICE = "errs"

SOURCES = {
    "billing.py": """
from pydantic import BaseModel

from flux import ExecutionContext, workflow


class Amount(BaseModel):
    amount: float


@workflow.with_options(namespace="billing")
async def invoice(ctx: ExecutionContext[Amount]):
    return ctx.input.amount


@workflow.with_options(namespace="billing")
async def process(ctx: ExecutionContext):
    return "billing"
""",
    "analytics.py": """
from flux import ExecutionContext, workflow


@workflow.with_options(namespace="analytics")
async def process(ctx: ExecutionContext):
    return "analytics"
""",
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("error-contract")
    server = processes.start_server(cwd)
    started = []
    try:
        for filename, source in SOURCES.items():
            status, body = processes.register_source(server.url, source, filename)
            assert status == 201, body
        status, body = processes.http(
            "POST",
            f"{server.url}/services",
            {"name": SERVICE, "namespaces": ["billing", "analytics"]},
        )
        assert status == 201, body
        for service in (SERVICE, "ghost"):
            started.append(processes.start_standalone(cwd, service, server.url, "--no-mcp"))
        yield server, *started
    finally:
        for process in started:
            process.stop()
        server.stop()


def both(servers, service: str, tail: str, body=None, **kw):
    """(main server's answer, standalone process's answer) for one call."""
    server, own, ghost = servers
    standalone = own if service == SERVICE else ghost
    main = processes.http("POST", f"{server.url}/services/{service}/{tail}", body, **kw)
    root = processes.http("POST", f"{standalone.url}/{tail}", body, **kw)
    return main, root


@pytest.mark.parametrize(
    "service, tail, body, status, code",
    [
        (SERVICE, "nope", {}, 404, "endpoint_not_found"),
        ("ghost", "invoice", {}, 404, "service_not_found"),
        (SERVICE, "process", {}, 409, "name_collision"),
        (SERVICE, "invoice", {"amount": "lots"}, 422, "invalid_input"),
        (SERVICE, "invoice/bogus", {"amount": 1}, 400, "invalid_request"),
    ],
)
def test_both_servers_answer_the_same_error(servers, service, tail, body, status, code):
    main, root = both(servers, service, tail, body)
    assert main == root
    assert main[0] == status and main[1]["error"] == code and main[1]["message"]


def test_malformed_json_is_the_same_refusal_on_both(servers):
    main, root = both(servers, SERVICE, "invoice", raw=b"{not json")
    assert main == root and main[0] == 400 and main[1]["error"] == "invalid_request"


def test_details_never_hide_the_code_or_the_message(servers):
    (status, body), _ = both(servers, SERVICE, "process", {})
    assert status == 409
    assert body["error"] == "name_collision" and "ambiguous" in body["message"]
    assert body["namespaces"] == ["analytics", "billing"]
