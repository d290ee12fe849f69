"""core.services: validation, normalisation, CLI-style edits and the PUT update."""

from __future__ import annotations

import pytest

from core.errors import InvalidName, InvalidRequest
from core.model import ServiceDefinition, WorkflowRef
from core.services import (
    ServiceUpdate,
    add_namespace,
    add_workflow,
    apply_update,
    exclude,
    include,
    new_service,
    parse_new_service,
    parse_service_update,
    remove_namespace,
    remove_workflow,
    set_mcp,
)

R = WorkflowRef.parse


def test_new_service_normalises_selectors() -> None:
    service = new_service(
        "billing",
        namespaces=["billing", "analytics", "billing"],
        workflows=["report", "analytics/dash", "default/report"],
        exclusions=[R("billing/internal")],
        mcp_enabled=True,
    )
    assert service == ServiceDefinition(
        name="billing",
        namespaces=("analytics", "billing"),
        workflows=(R("analytics/dash"), R("default/report")),
        exclusions=(R("billing/internal"),),
        mcp_enabled=True,
        revision=1,
    )


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"name": "Billing"}, "service name"),
        ({"name": ""}, "service name"),
        ({"name": "-x"}, "service name"),
        ({"name": "a" * 65}, "service name"),
        ({"name": "ok", "namespaces": ["Bad NS"]}, "namespace"),
        ({"name": "ok", "workflows": ["a/b/c"]}, "namespace/name"),
        ({"name": "ok", "workflows": ["ns/not-an-identifier"]}, "workflow name"),
        ({"name": "ok", "workflows": ["ns/class"]}, "workflow name"),
        ({"name": "ok", "exclusions": ["UPPER/x"]}, "namespace"),
        ({"name": "ok", "exclusions": ["ns/" + "x" * 65]}, "workflow name"),
    ],
)
def test_new_service_refuses_bad_names_with_the_reason(kwargs, reason) -> None:
    with pytest.raises(InvalidName, match=reason):
        new_service(**kwargs)


def test_new_service_refuses_wrong_types() -> None:
    with pytest.raises(InvalidRequest, match="namespaces must be a list"):
        new_service("ok", namespaces="billing")
    with pytest.raises(InvalidRequest, match="mcp_enabled"):
        new_service("ok", mcp_enabled="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidName):
        new_service("ok", workflows=[3])  # type: ignore[list-item]


def test_parse_new_service() -> None:
    body = {"name": "b", "namespaces": ["b"], "workflows": ["x"], "mcp_enabled": True}
    assert parse_new_service(body) == new_service("b", ["b"], ["default/x"], mcp_enabled=True)
    with pytest.raises(InvalidRequest, match="unknown field"):
        parse_new_service({"name": "b", "namespace": ["b"]})
    with pytest.raises(InvalidRequest, match="missing field 'name'"):
        parse_new_service({"namespaces": ["b"]})
    with pytest.raises(InvalidRequest, match="list of strings"):
        parse_new_service({"name": "b", "workflows": "x"})
    with pytest.raises(InvalidRequest, match="JSON object"):
        parse_new_service(["b"])


def test_single_edits_are_idempotent_and_undoable() -> None:
    base = new_service("s", namespaces=["a"])
    added = add_namespace(base, "b")
    assert added.namespaces == ("a", "b")
    assert add_namespace(added, "b") is added
    assert remove_namespace(added, "b") == base
    assert remove_namespace(base, "zzz") is base

    with_wf = add_workflow(base, "x/y")
    assert with_wf.workflows == (R("x/y"),)
    assert add_workflow(with_wf, R("x/y")) is with_wf
    assert remove_workflow(with_wf, "x/y") == base

    excluded = exclude(base, "a/secret")
    assert excluded.exclusions == (R("a/secret"),)
    assert exclude(excluded, "a/secret") is excluded
    assert include(excluded, "a/secret") == base
    assert include(base, "a/secret") is base

    assert set_mcp(base, True).mcp_enabled is True
    assert set_mcp(set_mcp(base, True), False) == base


def test_edits_validate_their_argument() -> None:
    base = new_service("s")
    with pytest.raises(InvalidName):
        add_namespace(base, "Nope!")
    with pytest.raises(InvalidName):
        exclude(base, "a/b/c")
    with pytest.raises(InvalidName):
        remove_workflow(base, "a/1x")
    with pytest.raises(InvalidRequest):
        set_mcp(base, 1)  # type: ignore[arg-type]


def test_edits_keep_the_revision() -> None:
    service = new_service("s")
    stored = ServiceDefinition(name="s", revision=7)
    assert add_namespace(stored, "a").revision == 7
    assert service.revision == 1


def test_parse_service_update_canonicalises() -> None:
    update = parse_service_update(
        {
            "add_namespaces": ["b", "a", "b"],
            "add_workflows": ["report", "x/y"],
            "remove_exclusions": ["billing/internal"],
            "mcp_enabled": True,
        }
    )
    assert update == ServiceUpdate(
        add_namespaces=("a", "b"),
        add_workflows=("default/report", "x/y"),
        remove_exclusions=("billing/internal",),
        mcp_enabled=True,
    )
    assert parse_service_update({}) == ServiceUpdate()
    assert parse_service_update({"mcp_enabled": None}).mcp_enabled is None


@pytest.mark.parametrize(
    "body, error, match",
    [
        ({"add_namespace": ["a"]}, InvalidRequest, "unknown field"),
        ({"add_namespaces": "a"}, InvalidRequest, "list of strings"),
        ({"add_workflows": [1]}, InvalidRequest, "list of strings"),
        ({"mcp_enabled": "true"}, InvalidRequest, "mcp_enabled"),
        ({"mcp_enabled": 1}, InvalidRequest, "mcp_enabled"),
        ("add_namespaces", InvalidRequest, "JSON object"),
        ({"add_namespaces": ["A"]}, InvalidName, "namespace"),
        ({"remove_workflows": ["a/b/c"]}, InvalidName, "namespace/name"),
        ({"add_exclusions": ["x"], "remove_exclusions": ["default/x"]}, InvalidRequest, "both"),
        ({"add_namespaces": ["a"], "remove_namespaces": ["a"]}, InvalidRequest, "both"),
    ],
)
def test_parse_service_update_refuses(body, error, match) -> None:
    with pytest.raises(error, match=match):
        parse_service_update(body)


def test_apply_update() -> None:
    service = ServiceDefinition(
        name="billing",
        namespaces=("billing",),
        exclusions=(R("billing/internal"),),
        revision=3,
    )
    update = parse_service_update(
        {
            "add_namespaces": ["analytics"],
            "add_workflows": ["ops/report"],
            "add_exclusions": ["analytics/process"],
            "remove_exclusions": ["billing/internal"],
            "remove_namespaces": ["billing"],
            "mcp_enabled": True,
        }
    )
    assert apply_update(service, update) == ServiceDefinition(
        name="billing",
        namespaces=("analytics",),
        workflows=(R("ops/report"),),
        exclusions=(R("analytics/process"),),
        mcp_enabled=True,
        revision=3,
    )
    assert apply_update(service, ServiceUpdate()) is service


def test_apply_update_removes_before_adding() -> None:
    service = new_service("s", namespaces=["a"])
    both = ServiceUpdate(add_namespaces=("a",), remove_namespaces=("a",))
    assert apply_update(service, both).namespaces == ("a",)
    with pytest.raises(InvalidName):
        apply_update(service, ServiceUpdate(add_workflows=("a/b/c",)))
