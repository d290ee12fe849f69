"""core.convert: the JSON shapes of docs/http-api.md and errors on malformed documents."""

from __future__ import annotations

import json

import pytest

from core.convert import resolution_from_json, service_json, workflow_info_json
from core.errors import InvalidName, InvalidRequest
from core.model import CatalogSnapshot, Endpoint, Resolution, WorkflowInfo, WorkflowRef
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
    assert json.loads(json.dumps(workflow_info_json(info))) == workflow_info_json(info)
    assert workflow_info_json(WorkflowInfo(R("default/ping"), 1)) == {
        "ref": "default/ping",
        "namespace": "default",
        "name": "ping",
        "version": 1,
        "input_schema": None,
        "description": "",
    }


def test_an_endpoint_reads_back_as_the_workflow_info_it_was_written_from() -> None:
    info = WorkflowInfo(R("billing/invoice"), 3, {"type": "object"}, "Make an invoice.")
    service = new_service("billing", namespaces=["billing"])
    body = service_json(service, resolve(service, CatalogSnapshot(1, (info,))))
    (endpoint,) = resolution_from_json(body).endpoints
    assert endpoint == Endpoint("invoice", info)
    # the endpoint body says the name once, as the endpoint's
    (written,) = body["endpoints"]
    assert written == {"name": "invoice", **workflow_info_json(info)}


def test_an_endpoint_without_ref_is_read_from_namespace_and_name() -> None:
    body = {
        "name": "s",
        "endpoints": [{"name": "invoice", "namespace": "billing", "version": 3}],
    }
    (endpoint,) = resolution_from_json(body).endpoints
    assert endpoint == Endpoint("invoice", WorkflowInfo(R("billing/invoice"), 3))


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
    assert resolution_from_json(body).service == service


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


def test_reading_a_service_back_checks_names_and_keeps_the_revision() -> None:
    body = {"name": "s", "namespaces": ["b", "a"], "workflows": ["x"], "revision": 9}
    resolution = resolution_from_json(body)
    assert resolution.service.namespaces == ("a", "b")
    assert resolution.service.workflows == (R("default/x"),)
    assert resolution.service.revision == 9
    # a definition alone (no resolution fields) reads back as a resolution of nothing
    assert resolution == Resolution(service=resolution.service, catalog_revision=0)
    plain = new_service("s", namespaces=["a"], exclusions=["a/x"], mcp_enabled=True)
    assert resolution_from_json(service_json(plain)).service == plain


@pytest.mark.parametrize(
    "body, error, match",
    [
        ("s", InvalidRequest, "service must be a JSON object"),
        (None, InvalidRequest, "service must be a JSON object"),
        ({"namespaces": []}, InvalidRequest, "missing field 'name'"),
        ({"name": "S"}, InvalidName, "service name"),
        ({"name": "s", "namespaces": ["Bad NS"]}, InvalidName, "namespace"),
        ({"name": "s", "namespaces": 5}, InvalidRequest, "namespaces must be a list"),
        # a lone string is not taken letter by letter, nor a truthy value as true
        ({"name": "s", "namespaces": "ab"}, InvalidRequest, "namespaces must be a list"),
        ({"name": "s", "exclusions": "a/b"}, InvalidRequest, "exclusions must be a list"),
        ({"name": "s", "mcp_enabled": "no"}, InvalidRequest, "mcp_enabled"),
        ({"name": "s", "mcp_enabled": 1}, InvalidRequest, "mcp_enabled"),
        ({"name": "s", "workflows": [3]}, InvalidRequest, "must be a string"),
        ({"name": "s", "workflows": ["a/b/c"]}, InvalidRequest, "namespace/name"),
        ({"name": "s", "revision": "9"}, InvalidRequest, "revision must be an integer"),
        ({"name": "s", "revision": True}, InvalidRequest, "revision must be an integer"),
        ({"name": "s", "catalog_revision": "3"}, InvalidRequest, "catalog_revision"),
        ({"name": "s", "endpoints": [[]]}, InvalidRequest, "endpoint must be a JSON object"),
        ({"name": "s", "endpoints": "x"}, InvalidRequest, "endpoint must be a JSON object"),
        ({"name": "s", "endpoints": [{"name": "x"}]}, InvalidRequest, "namespace"),
        (
            {"name": "s", "endpoints": [{"ref": "a/b", "version": True}]},
            InvalidRequest,
            "version must be an integer",
        ),
        (
            {"name": "s", "endpoints": [{"ref": "a/b", "version": 1, "input_schema": "object"}]},
            InvalidRequest,
            "input_schema",
        ),
        ({"name": "s", "collisions": ["boom"]}, InvalidRequest, "collision must be"),
        ({"name": "s", "unresolved": ["a/b/c"]}, InvalidRequest, "namespace/name"),
    ],
)
def test_malformed_service_bodies_raise_a_flux_error(body, error, match) -> None:
    with pytest.raises(error, match=match):
        resolution_from_json(body)
