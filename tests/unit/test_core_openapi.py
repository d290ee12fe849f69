"""core.openapi: the per-service document validates and describes every resolved endpoint."""

from __future__ import annotations

import json

import pytest
from openapi_spec_validator import validate
from pydantic import BaseModel

from core.model import CatalogSnapshot, WorkflowInfo, WorkflowRef
from core.openapi import service_openapi
from core.resolve import resolve
from core.services import new_service

R = WorkflowRef.parse


class Item(BaseModel):
    sku: str
    qty: int


class Node(BaseModel):
    value: int
    children: list[Node] = []


class InvoiceInput(BaseModel):
    customer_id: str
    items: list[Item]
    tree: Node | None = None


def document(*infos: WorkflowInfo, namespaces=("billing",), **kwargs) -> dict:
    snapshot = CatalogSnapshot(5, infos)
    doc = service_openapi(
        resolve(new_service("billing", namespaces=namespaces), snapshot), **kwargs
    )
    validate(doc)
    return json.loads(json.dumps(doc))  # plain JSON, nothing else


def schema_at(doc: dict, ref: str) -> dict:
    node = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_every_endpoint_gets_run_modes_resume_and_status() -> None:
    doc = document(
        WorkflowInfo(R("billing/invoice"), 3, InvoiceInput.model_json_schema(), "Make one.\nMore."),
        WorkflowInfo(R("billing/echo"), 1, None),
    )
    assert doc["openapi"] == "3.1.0"
    assert doc["servers"] == [{"url": "/services/billing"}]
    for name in ("invoice", "echo"):
        expected = {
            f"/{name}",
            f"/{name}/resume/{{execution_id}}",
            f"/{name}/status/{{execution_id}}",
            f"/{name}/events/{{execution_id}}",
        }
        expected |= {f"/{name}/{mode}" for mode in ("sync", "async", "stream")}
        expected |= {f"/{name}/resume/{{execution_id}}/{m}" for m in ("sync", "async", "stream")}
        assert expected <= set(doc["paths"])
    assert len(doc["paths"]) == 22
    events = doc["paths"]["/invoice/events/{execution_id}"]["get"]
    assert set(events["responses"]) == {"200", "400", "404"}
    assert "text/event-stream" in events["responses"]["200"]["content"]
    header = doc["components"]["parameters"]["last_event_id"]
    assert header["in"] == "header" and header["name"] == "Last-Event-ID"
    assert {"$ref": "#/components/parameters/last_event_id"} in events["parameters"]
    cancel = doc["paths"]["/invoice/cancel/{execution_id}"]["post"]
    assert set(cancel["responses"]) == {"200", "404", "409"}

    run = doc["paths"]["/invoice"]["post"]
    assert set(run["responses"]) == {"200", "202", "400", "404", "409", "413", "422", "500"}
    params = {schema_at(doc, p["$ref"])["name"] for p in run["parameters"]}
    assert params == {"version", "detailed", "Idempotency-Key", "Flux-Callback-Url"}
    assert run["description"] == "billing/invoice v3: Make one."
    assert set(doc["paths"]["/invoice/async"]["post"]["responses"]) >= {"202", "422"}
    stream = doc["paths"]["/invoice/stream"]["post"]["responses"]["200"]
    assert "text/event-stream" in stream["content"]
    status = doc["paths"]["/invoice/status/{execution_id}"]["get"]
    assert "requestBody" not in status
    op_ids = [op["operationId"] for path in doc["paths"].values() for op in path.values()]
    assert len(op_ids) == len(set(op_ids))


def test_typed_input_moves_defs_into_components() -> None:
    doc = document(WorkflowInfo(R("billing/invoice"), 1, InvoiceInput.model_json_schema()))
    body = doc["paths"]["/invoice"]["post"]["requestBody"]
    assert body["required"] is True
    input_ref = body["content"]["application/json"]["schema"]["$ref"]
    input_schema = schema_at(doc, input_ref)
    assert set(input_schema["properties"]) == {"customer_id", "items", "tree"}
    assert "$defs" not in json.dumps(doc)
    schemas = doc["components"]["schemas"]
    assert schemas["Item"]["properties"]["qty"] == {"title": "Qty", "type": "integer"}
    # the recursive model still points at itself
    assert schemas["Node"]["properties"]["children"]["items"] == {
        "$ref": "#/components/schemas/Node"
    }


def test_untyped_input_accepts_any_json() -> None:
    doc = document(WorkflowInfo(R("billing/echo"), 1, None))
    body = doc["paths"]["/echo"]["post"]["requestBody"]
    assert body == {"required": False, "content": {"application/json": {"schema": {}}}}


def test_same_named_definitions_with_different_content_do_not_clash() -> None:
    first = {
        "type": "object",
        "properties": {"item": {"$ref": "#/$defs/Item"}},
        "$defs": {"Item": {"type": "object", "properties": {"a": {"type": "string"}}}},
    }
    second = {
        "type": "object",
        "properties": {"item": {"$ref": "#/$defs/Item"}, "meta": {"$ref": "#/$defs/Meta"}},
        "$defs": {
            "Item": {"type": "object", "properties": {"b": {"$ref": "#/$defs/Meta"}}},
            "Meta": {"type": "integer"},
        },
    }
    shared = {
        "type": "object",
        "properties": {"item": {"$ref": "#/$defs/Item"}},
        "$defs": {"Item": {"type": "object", "properties": {"a": {"type": "string"}}}},
    }
    doc = document(
        WorkflowInfo(R("billing/alpha"), 1, first),
        WorkflowInfo(R("billing/beta"), 1, second),
        WorkflowInfo(R("billing/gamma"), 1, shared),
        WorkflowInfo(
            R("billing/Error"),
            1,
            {"$defs": {"Error": {"type": "integer"}}, "$ref": "#/$defs/Error"},
        ),
    )

    def item_of(name: str) -> dict:
        body = doc["paths"][f"/{name}"]["post"]["requestBody"]["content"]["application/json"]
        props = schema_at(doc, body["schema"]["$ref"])["properties"]
        return schema_at(doc, props["item"]["$ref"])

    assert item_of("alpha")["properties"] == {"a": {"type": "string"}}
    beta_item = item_of("beta")
    assert schema_at(doc, beta_item["properties"]["b"]["$ref"]) == {"type": "integer"}
    assert item_of("gamma") is not None and item_of("gamma") == item_of("alpha")
    assert doc["components"]["schemas"]["Error"]["required"] == ["error", "message"]


def test_collisions_are_left_out_and_mentioned() -> None:
    doc = document(
        WorkflowInfo(R("billing/process"), 1),
        WorkflowInfo(R("analytics/process"), 1),
        WorkflowInfo(R("analytics/report"), 1),
        namespaces=("analytics", "billing"),
    )
    assert not any(path.startswith("/process") for path in doc["paths"])
    assert "/report" in doc["paths"]
    assert "process" in doc["info"]["description"]


def test_standalone_prefix_and_empty_service() -> None:
    doc = document(WorkflowInfo(R("billing/echo"), 1), server_url_prefix="")
    assert doc["servers"] == [{"url": "/"}]
    empty = document()
    assert empty["paths"] == {}


@pytest.mark.parametrize("prefix", ["/services/{name}", "/api/services/{name}/"])
def test_prefix_takes_the_service_name(prefix: str) -> None:
    doc = document(WorkflowInfo(R("billing/echo"), 1), server_url_prefix=prefix)
    assert doc["servers"][0]["url"].endswith("/services/billing")


def test_run_and_resume_take_an_idempotency_key_and_may_answer_replayed() -> None:
    doc = document(WorkflowInfo(R("billing/invoice"), 1, InvoiceInput.model_json_schema()))
    key = doc["components"]["parameters"]["idempotency_key"]
    assert (key["name"], key["in"], key["required"]) == ("Idempotency-Key", "header", False)
    assert key["schema"]["maxLength"] == 255
    for path, op in [(path, op) for path, item in doc["paths"].items() for op in item.values()]:
        names = {schema_at(doc, p["$ref"])["name"] for p in op["parameters"]}
        is_call = op["operationId"].startswith(("run_", "resume_"))
        assert ("Idempotency-Key" in names) == is_call, path
        if not is_call:
            continue
        assert "422" in op["responses"], path
        for status, answer in op["responses"].items():
            if status in ("200", "202", "500"):
                answer = schema_at(doc, answer["$ref"]) if "$ref" in answer else answer
                replayed = answer["headers"]["Idempotent-Replayed"]
                assert schema_at(doc, replayed["$ref"])["schema"]["enum"] == ["true"]
    reused = schema_at(doc, "#/components/responses/KeyReused")
    assert "idempotency_key_reused" in reused["description"]


def test_only_runs_take_a_callback_url() -> None:
    doc = document(WorkflowInfo(R("billing/invoice"), 1))
    header = doc["components"]["parameters"]["callback_url"]
    assert (header["name"], header["in"], header["required"]) == (
        "Flux-Callback-Url",
        "header",
        False,
    )
    for path, item in doc["paths"].items():
        for op in item.values():
            names = {schema_at(doc, p["$ref"])["name"] for p in op["parameters"]}
            is_run = op["operationId"].startswith("run_")
            assert ("Flux-Callback-Url" in names) == is_run, path
