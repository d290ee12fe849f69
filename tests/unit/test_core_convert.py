"""core.convert: the JSON shapes of docs/http-api.md and errors on malformed documents."""

from __future__ import annotations

import json

import pytest

from core.convert import (
    endpoint_from_json,
    event_from_json,
    event_json,
    execution_from_json,
    execution_json,
    resolution_from_json,
    service_from_json,
    service_json,
    workflow_info_from_json,
    workflow_info_json,
)
from core.errors import InvalidName, InvalidRequest
from core.model import (
    CatalogSnapshot,
    EventKind,
    Execution,
    ExecutionError,
    ExecutionEvent,
    ExecutionState,
    WorkflowInfo,
    WorkflowRef,
)
from core.resolve import resolve
from core.services import new_service

R = WorkflowRef.parse


def test_workflow_info_shape() -> None:
    info = WorkflowInfo(R("billing/invoice"), 3, {"type": "object"}, "Make an invoice.")
    assert workflow_info_json(info) == {
        "ref": "billing/invoice",
        "namespace": "billing",
        "name": "invoice",
        "version": 3,
        "input_schema": {"type": "object"},
        "description": "Make an invoice.",
    }
    assert workflow_info_from_json(workflow_info_json(info)) == info
    assert workflow_info_from_json({"namespace": "billing", "name": "invoice", "version": 3}) == (
        WorkflowInfo(R("billing/invoice"), 3)
    )


def test_service_shape_of_the_http_contract() -> None:
    snapshot = CatalogSnapshot(
        17,
        (
            WorkflowInfo(R("billing/invoice"), 3, {"type": "object"}, "..."),
            WorkflowInfo(R("billing/internal"), 1),
            WorkflowInfo(R("billing/process"), 1),
            WorkflowInfo(R("billing/health"), 1),
            WorkflowInfo(R("analytics/process"), 1),
        ),
    )
    service = new_service(
        "billing",
        namespaces=["billing"],
        workflows=["analytics/process", "billing/gone"],
        exclusions=["billing/internal"],
    )
    body = service_json(service, resolve(service, snapshot))
    assert body == {
        "name": "billing",
        "namespaces": ["billing"],
        "workflows": ["analytics/process", "billing/gone"],
        "exclusions": ["billing/internal"],
        "mcp_enabled": False,
        "revision": 1,
        "catalog_revision": 17,
        "endpoints": [
            {
                "name": "health",
                "ref": "billing/health",
                "namespace": "billing",
                "version": 1,
                "input_schema": None,
                "description": "",
            },
            {
                "name": "invoice",
                "ref": "billing/invoice",
                "namespace": "billing",
                "version": 3,
                "input_schema": {"type": "object"},
                "description": "...",
            },
        ],
        "collisions": [
            {
                "name": "process",
                "refs": ["analytics/process", "billing/process"],
                "namespaces": ["analytics", "billing"],
            }
        ],
        "unresolved": ["billing/gone"],
        "reserved": ["health"],
    }
    assert json.loads(json.dumps(body)) == body
    assert resolution_from_json(body) == resolve(service, snapshot)
    assert service_from_json(body) == service


def test_service_without_resolution_has_only_the_definition() -> None:
    body = service_json(new_service("s", namespaces=["a"], mcp_enabled=True))
    assert body == {
        "name": "s",
        "namespaces": ["a"],
        "workflows": [],
        "exclusions": [],
        "mcp_enabled": True,
        "revision": 1,
    }


def test_service_from_json_checks_names_and_keeps_the_revision() -> None:
    body = {"name": "s", "namespaces": ["b", "a"], "workflows": ["x"], "revision": 9}
    service = service_from_json(body)
    assert service.namespaces == ("a", "b")
    assert service.workflows == (R("default/x"),)
    assert service.revision == 9
    with pytest.raises(InvalidName):
        service_from_json({"name": "S"})
    with pytest.raises(InvalidRequest):
        service_from_json({"name": "s", "revision": "9"})
    with pytest.raises(InvalidRequest):
        service_from_json("s")


def test_execution_shape_and_round_trip() -> None:
    execution = Execution(
        execution_id="e1",
        ref=R("billing/invoice"),
        version=2,
        state=ExecutionState.FAILED,
        input={"a": [1, 2]},
        output=None,
        error=ExecutionError("ValueError", "boom"),
        pause_name=None,
        created_at=1.5,
        updated_at=2.5,
    )
    body = execution_json(execution)
    assert body["ref"] == "billing/invoice"
    assert body["state"] == "FAILED"
    assert type(body["state"]) is str
    assert body["error"] == {"type": "ValueError", "message": "boom"}
    assert execution_from_json(json.loads(json.dumps(body))) == execution


def test_event_shape_and_round_trip() -> None:
    event = ExecutionEvent("e1", 3, EventKind.RESUMED, "approval#0", {"ok": True}, 4.0)
    body = event_json(event)
    assert body == {
        "execution_id": "e1",
        "seq": 3,
        "kind": "resumed",
        "key": "approval#0",
        "value": {"ok": True},
        "at": 4.0,
    }
    assert type(body["kind"]) is str
    assert event_from_json(body) == event


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.pop("ref"),
        lambda b: b.update(state="DONE"),
        lambda b: b.update(ref="a/b/c"),
        lambda b: b.update(error="boom"),
    ],
)
def test_malformed_execution_raises_invalid_request(mutate) -> None:
    body = execution_json(Execution("e1", R("a/b"), 1, ExecutionState.RUNNING))
    mutate(body)
    with pytest.raises(InvalidRequest, match="malformed Execution"):
        execution_from_json(body)


def test_malformed_documents() -> None:
    with pytest.raises(InvalidRequest):
        event_from_json({"execution_id": "e", "seq": 1, "kind": "nope"})
    with pytest.raises(InvalidRequest):
        event_from_json(None)
    with pytest.raises(InvalidRequest):
        workflow_info_from_json({"ref": "a/b", "version": True})
    with pytest.raises(InvalidRequest):
        workflow_info_from_json({"ref": "a/b", "version": 1, "input_schema": "object"})
    with pytest.raises(InvalidRequest):
        endpoint_from_json([])
    with pytest.raises(InvalidRequest):
        resolution_from_json({"name": "s", "endpoints": [{"name": "x"}]})
