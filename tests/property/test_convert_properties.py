"""Round trips through core.convert: a resolution the main server sends as JSON (`GET
/services/{name}`) comes back, in the standalone process, equal to what was resolved."""

from __future__ import annotations

import json

from attrs import evolve
from hypothesis import given
from hypothesis import strategies as st

from core.convert import resolution_from_json, service_json, workflow_info_json
from core.model import Resolution
from core.resolve import resolve
from core.services import new_service

from .catalogs import CORE, catalogs, selectors


def through_text(value):
    """As the wire does: to JSON text and back."""
    return json.loads(json.dumps(value))


@CORE
@given(selectors(), st.booleans(), st.integers(1, 10**6))
def test_service_round_trip(raw, mcp, revision) -> None:
    stored = evolve(new_service("svc", **raw, mcp_enabled=mcp), revision=revision)
    body = through_text(service_json(stored))
    assert resolution_from_json(body) == Resolution(service=stored, catalog_revision=0)


@CORE
@given(selectors(), st.booleans(), st.integers(1, 10**6), catalogs())
def test_resolution_round_trip(raw, mcp, revision, snapshot) -> None:
    service = evolve(new_service("svc", **raw, mcp_enabled=mcp), revision=revision)
    resolution = resolve(service, snapshot)
    body = through_text(service_json(resolution.service, resolution))
    assert resolution_from_json(body) == resolution
    assert service_json(resolution.service, resolution_from_json(body)) == body


@CORE
@given(catalogs())
def test_workflow_info_shape(snapshot) -> None:
    for info in snapshot.workflows:
        body = through_text(workflow_info_json(info))
        assert body == workflow_info_json(info)
        assert body["ref"] == f"{body['namespace']}/{body['name']}" == str(info.ref)
        assert body["version"] == info.version
        assert body["input_schema"] == info.input_schema
        assert body["description"] == info.description


@CORE
@given(selectors(), catalogs())
def test_each_endpoint_is_its_workflow_info_under_the_endpoint_name(raw, snapshot) -> None:
    resolution = resolve(new_service("svc", **raw), snapshot)
    body = service_json(resolution.service, resolution)
    assert len(body["endpoints"]) == len(resolution.endpoints)
    for written, endpoint in zip(body["endpoints"], resolution.endpoints, strict=True):
        info = workflow_info_json(endpoint.workflow)
        del info["name"]
        assert written == {"name": endpoint.name, **info}
