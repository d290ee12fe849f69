"""A bounded, seeded fuzz run of a service's published OpenAPI document against a real server
(schemathesis): whatever the document lets a caller send, the server never answers a 5xx other
than a documented workflow failure (500 with the detailed `{"state": "FAILED", "error"}` shape).

Bounded: at most `MAX_EXAMPLES` cases per operation, a fixed seed, and `TIME_LIMIT` seconds for
the whole run (what is left past it is not called).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis.errors import Unsatisfiable

from tests.e2e import processes

MAX_EXAMPLES = 30
TIME_LIMIT = 50.0  # plus the case under way: about a minute in all
SERVICE = "fuzz"

SOURCE = '''
from typing import Literal

from pydantic import BaseModel, Field

from flux import ExecutionContext, pause, workflow

NS = "NS_HERE"


class Line(BaseModel):
    sku: str = Field(max_length=20)
    quantity: int = Field(ge=0, le=1000)


class Order(BaseModel):
    customer: str
    amount: float
    quantity: int
    priority: Literal["low", "high"] = "low"
    lines: list[Line] = []


@workflow.with_options(namespace=NS)
async def order(ctx: ExecutionContext[Order]):
    """Price an order."""
    return {"total": ctx.input.amount * ctx.input.quantity, "lines": len(ctx.input.lines)}


@workflow.with_options(namespace=NS)
async def echo(ctx: ExecutionContext):
    """Echo any JSON."""
    return {"got": ctx.input}


@workflow.with_options(namespace=NS)
async def approve(ctx: ExecutionContext[Line]):
    """Wait for an approval."""
    return {"approved": await pause("approval", ctx.input.sku)}


@workflow.with_options(namespace=NS)
async def picky(ctx: ExecutionContext[Line]):
    """Fail on an odd quantity: a documented workflow failure."""
    if ctx.input.quantity % 2:
        raise ValueError("odd quantity")
    return ctx.input.quantity
'''


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory) -> Iterator[processes.FluxProcess]:
    server = processes.start_server(tmp_path_factory.mktemp("fuzz"))
    try:
        status, body = processes.register_source(
            server.url, SOURCE.replace("NS_HERE", SERVICE), "fuzz.py"
        )
        assert status == 201, body
        status, body = processes.http(
            "POST", server.url + "/services", {"name": SERVICE, "namespaces": [SERVICE]}
        )
        assert status == 201, body
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def published(fuzz_server) -> Any:
    status, document = processes.http("GET", f"{fuzz_server.url}/services/{SERVICE}/openapi.json")
    assert status == 200, document
    assert len(document["paths"]) >= 8, document["paths"].keys()
    return schemathesis.openapi.from_dict(document)


def _documented_failure(response: Any) -> bool:
    """A workflow that failed: 500 with the detailed failed shape (docs/http-api.md)."""
    try:
        body = json.loads(response.content)
    except ValueError:
        return False
    return (
        isinstance(body, dict)
        and body.get("state") == "FAILED"
        and isinstance(body.get("error"), dict)
        and {"type", "message"} <= body["error"].keys()
    )


def test_no_server_error_for_anything_the_document_allows(fuzz_server, published) -> None:
    """schemathesis's pytest loader (`from_fixture`) does not run under this pytest, so its
    Python API drives Hypothesis directly: every operation, valid and invalid cases alike."""
    deadline = time.monotonic() + TIME_LIMIT
    base_url = f"{fuzz_server.url}/services/{SERVICE}"
    operations = [result.ok() for result in published.get_all_operations()]
    assert len(operations) >= 8
    calls: list[int] = []
    no_invalid: list[str] = []
    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            if time.monotonic() > deadline:
                break  # the time budget is spent: the operations left are not fuzzed

            @seed(20240601)
            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def fuzz(case: Any) -> None:
                if time.monotonic() > deadline:
                    return  # the time budget is spent: the cases left pass uncalled
                response = case.call(base_url=base_url, timeout=15)
                calls.append(response.status_code)
                _check(case, response)

            try:
                fuzz()
            except Unsatisfiable:
                # No invalid case exists for an operation without inputs to break.
                if mode is schemathesis.GenerationMode.POSITIVE:
                    raise
                no_invalid.append(operation.label)
    print(f"fuzzed {len(operations)} operations with {len(calls)} calls")
    assert len(calls) >= 8 * MAX_EXAMPLES  # the budget was not all spent on one operation
    assert len(no_invalid) < len(operations), no_invalid
    assert any(status < 300 for status in calls) and any(400 <= s < 500 for s in calls)


def _check(case: Any, response: Any) -> None:
    if response.status_code >= 500:
        assert response.status_code == 500 and _documented_failure(response), (
            f"{case.method} {case.formatted_path} -> {response.status_code}: "
            f"{response.content[:500]!r}"
        )
    if response.headers.get("content-type", [""])[0].startswith("application/json"):
        json.loads(response.content, parse_constant=_no_constant)  # strict JSON: never NaN


def _no_constant(name: str) -> Any:
    raise AssertionError(f"a JSON answer holds {name}")
