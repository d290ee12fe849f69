"""core.services: validation, normalisation and the PUT update (which the CLI's edits send)."""

from __future__ import annotations

import pytest

from core.errors import InvalidName, InvalidRequest
from core.model import ServiceDefinition, WorkflowRef
from core.services import (
    ServiceUpdate,
    apply_update,
    new_service,
    parse_new_service,
    parse_service_update,
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


def test_single_selector_updates_are_idempotent_and_undoable() -> None:
    base = new_service("s", namespaces=["a"])
    added = apply_update(base, ServiceUpdate(add_namespaces=("b",)))
    assert added.namespaces == ("a", "b")
    assert apply_update(added, ServiceUpdate(add_namespaces=("b",))) is added
    assert apply_update(added, ServiceUpdate(remove_namespaces=("b",))) == base
    assert apply_update(base, ServiceUpdate(remove_namespaces=("zzz",))) is base

    with_wf = apply_update(base, ServiceUpdate(add_workflows=("x/y",)))
    assert with_wf.workflows == (R("x/y"),)
    assert apply_update(with_wf, ServiceUpdate(add_workflows=("x/y",))) is with_wf
    assert apply_update(with_wf, ServiceUpdate(remove_workflows=("x/y",))) == base

    # the CLI's `service exclude` / `service include`
    excluded = apply_update(base, parse_service_update({"add_exclusions": ["a/secret"]}))
    assert excluded.exclusions == (R("a/secret"),)
    assert apply_update(excluded, ServiceUpdate(add_exclusions=("a/secret",))) is excluded
    included = apply_update(excluded, parse_service_update({"remove_exclusions": ["a/secret"]}))
    assert included == base
    assert apply_update(base, ServiceUpdate(remove_exclusions=("a/secret",))) is base

    on = apply_update(base, ServiceUpdate(mcp_enabled=True))
    assert on.mcp_enabled is True
    assert apply_update(on, ServiceUpdate(mcp_enabled=False)) == base
    assert apply_update(on, ServiceUpdate(mcp_enabled=None)) is on


def test_include_does_not_add_a_workflow_selector() -> None:
    excluded = new_service("s", exclusions=["a/secret"])
    included = apply_update(excluded, ServiceUpdate(remove_exclusions=("a/secret",)))
    assert included == new_service("s")
    assert included.workflows == ()


@pytest.mark.parametrize(
    "update, error",
    [
        (ServiceUpdate(add_namespaces=("Nope!",)), InvalidName),
        (ServiceUpdate(remove_namespaces=("Nope!",)), InvalidName),
        (ServiceUpdate(add_exclusions=("a/b/c",)), InvalidName),
        (ServiceUpdate(remove_exclusions=("a/b/c",)), InvalidName),
        (ServiceUpdate(add_workflows=("a/1x",)), InvalidName),
        (ServiceUpdate(remove_workflows=("a/1x",)), InvalidName),
        (ServiceUpdate(mcp_enabled=1), InvalidRequest),  # type: ignore[arg-type]
    ],
)
def test_apply_update_validates_its_argument(update, error) -> None:
    # an update built in code, not parsed from a body, is still checked
    with pytest.raises(error):
        apply_update(new_service("s"), update)


def test_updates_keep_the_revision() -> None:
    service = new_service("s")
    stored = ServiceDefinition(name="s", revision=7)
    assert apply_update(stored, ServiceUpdate(add_namespaces=("a",))).revision == 7
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
