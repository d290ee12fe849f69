"""Properties of core.mcp_tools: five tools per endpoint, unique names, valid self-contained
schemas, typed fields kept, arguments turned back into the body they describe."""

from __future__ import annotations

import json
import keyword
from typing import Any

import jsonschema
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, create_model

from core.errors import InputValidationError
from core.mcp_tools import arguments_to_body as to_body
from core.mcp_tools import mcp_info, tool_clashes, tool_names, tools_for
from core.model import (
    Endpoint,
    Resolution,
    ServiceDefinition,
    WorkflowInfo,
    WorkflowRef,
)

settings.register_profile("mcp", max_examples=60, deadline=None)
settings.load_profile("mcp")

identifiers = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True).filter(
    lambda s: not keyword.iskeyword(s)
)

# Scalar field kinds: (python type, JSON type, strategy of valid values, an invalid value).
SCALARS: dict[str, tuple[type, str, st.SearchStrategy[Any], Any]] = {
    "str": (str, "string", st.text(max_size=8), 12),
    "int": (int, "integer", st.integers(-1000, 1000), "nope"),
    "float": (float, "number", st.floats(allow_nan=False, allow_infinity=False), "nope"),
    "bool": (bool, "boolean", st.booleans(), "nope"),
}


@st.composite
def field_specs(draw, depth: int = 0) -> dict[str, tuple[str | dict, bool]]:
    """{field name: (scalar kind or nested field specs, required)}."""
    names = draw(st.lists(identifiers, min_size=0 if depth else 1, max_size=4, unique=True))
    kinds = st.sampled_from(sorted(SCALARS))
    if depth < 2:
        kinds = kinds | st.deferred(lambda: field_specs(depth + 1))
    return {name: (draw(kinds), draw(st.booleans())) for name in names}


def build_model(specs: dict, name: str = "M") -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for index, (field, (kind, required)) in enumerate(specs.items()):
        annotation = (
            SCALARS[kind][0] if isinstance(kind, str) else build_model(kind, f"{name}_{index}")
        )
        fields[field] = (annotation, ...) if required else (annotation | None, None)
    return create_model(name, **fields)


@st.composite
def valid_values(draw, specs: dict) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for field, (kind, required) in specs.items():
        if not required and draw(st.booleans()):
            continue
        value[field] = draw(SCALARS[kind][2]) if isinstance(kind, str) else draw(valid_values(kind))
    return value


def arguments_to_body(spec, arguments):
    return to_body(spec, arguments)


def info(name: str, schema: dict | None, doc: str = "") -> WorkflowInfo:
    return WorkflowInfo(WorkflowRef("ns", name), 1, schema, doc)


schemas = st.one_of(
    st.none(),
    st.just({"type": "object"}),
    st.just({"type": "object", "additionalProperties": {"type": "integer"}}),
    st.just({"type": "integer"}),
    field_specs().map(lambda specs: build_model(specs).model_json_schema()),
)


@st.composite
def endpoint_sets(draw) -> list[Endpoint]:
    names = draw(st.lists(identifiers, min_size=1, max_size=5, unique=True))
    # Derived names of other endpoints provoke tool-name clashes.
    derived = draw(
        st.lists(
            st.tuples(
                st.sampled_from(names), st.sampled_from(["{}_async", "resume_{}", "status_{}"])
            ),
            max_size=2,
        )
    )
    names = sorted({*names, *(pattern.format(n) for n, pattern in derived)})
    return [Endpoint(n, info(n, draw(schemas), draw(st.text(max_size=20)))) for n in names]


def refs_in(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs_in(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs_in(value)]
    return []


@given(endpoint_sets())
def test_names_are_unique_and_only_clashing_names_are_dropped(endpoints):
    specs = tools_for(endpoints)
    names = [spec.name for spec in specs]
    assert len(names) == len(set(names))
    clashing = {clash.name for clash in tool_clashes(endpoints)}
    wanted = {name for e in endpoints for name in tool_names(e.name)}
    assert set(names) == wanted - clashing
    for clash in tool_clashes(endpoints):
        assert len(clash.workflows) >= 2
        assert all(clash.name in tool_names(w) for w in clash.workflows)


@given(st.lists(identifiers, min_size=1, max_size=6, unique=True))
def test_five_tools_per_endpoint_without_clashes(names):
    endpoints = [Endpoint(n, info(n, None)) for n in names]
    assume(not tool_clashes(endpoints))
    specs = tools_for(endpoints)
    assert len(specs) == 5 * len(endpoints)
    for endpoint in endpoints:
        mine = {spec.name: spec.action for spec in specs if spec.workflow == endpoint.name}
        n = endpoint.name
        assert mine == {
            n: "run",
            f"{n}_async": "async",
            f"resume_{n}": "resume",
            f"resume_{n}_async": "resume_async",
            f"status_{n}": "status",
        }


@given(endpoint_sets())
def test_every_schema_is_valid_and_self_contained(endpoints):
    for spec in tools_for(endpoints):
        jsonschema.Draft202012Validator.check_schema(spec.input_schema)
        assert spec.input_schema["type"] == "object"
        defs = spec.input_schema.get("$defs", {})
        for ref in refs_in(spec.input_schema):
            assert ref.startswith("#/$defs/") and ref.removeprefix("#/$defs/") in defs
        json.dumps(spec.input_schema)  # serialisable as a tools/list answer


@given(field_specs())
def test_typed_fields_become_parameters(specs):
    model = build_model(specs)
    schema = model.model_json_schema()
    run, run_async, resume, _, status = tools_for([Endpoint("w", info("w", schema))])
    for tool in (run, run_async):
        props = tool.input_schema["properties"]
        assert set(props) == set(specs)
        assert set(tool.input_schema.get("required", [])) == {f for f, (_, r) in specs.items() if r}
        for field, (kind, required) in specs.items():
            if isinstance(kind, str) and required:
                assert props[field]["type"] == SCALARS[kind][1]
            elif isinstance(kind, dict) and required:
                assert props[field]["type"] == "object"
                assert set(props[field]["properties"]) == set(kind)
            else:
                assert props[field]["default"] is None
    assert set(resume.input_schema["properties"]) == {"execution_id", "input"}
    assert resume.input_schema["required"] == ["execution_id"]
    assert status.input_schema["required"] == ["execution_id"]


@given(st.data())
def test_valid_arguments_are_the_body(data):
    specs = data.draw(field_specs())
    model = build_model(specs)
    run, run_async, *_ = tools_for([Endpoint("w", info("w", model.model_json_schema()))])
    arguments = data.draw(valid_values(specs))
    for tool in (run, run_async):
        body, execution_id = arguments_to_body(tool, arguments)
        assert body == arguments and execution_id is None
        model.model_validate(body)  # the server would accept it


@given(st.data())
def test_a_wrongly_typed_field_is_named(data):
    specs = data.draw(field_specs())
    scalar_fields = [f for f, (kind, _) in specs.items() if isinstance(kind, str)]
    assume(scalar_fields)
    field = data.draw(st.sampled_from(scalar_fields))
    run, *_ = tools_for([Endpoint("w", info("w", build_model(specs).model_json_schema()))])
    arguments = data.draw(valid_values(specs))
    arguments[field] = SCALARS[specs[field][0]][3]
    with pytest.raises(InputValidationError) as caught:
        arguments_to_body(run, arguments)
    assert f"{field}:" in str(caught.value)
    assert [field] in [e["loc"] for e in caught.value.details["errors"]]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(json_values, identifiers)
def test_untyped_input_and_resume_values_round_trip(value, execution_id):
    run, run_async, resume, resume_async, status = tools_for([Endpoint("w", info("w", None))])
    text = json.dumps(value)
    assert arguments_to_body(run, {"input": text}) == (value, None)
    assert arguments_to_body(run_async, {"input": text}) == (value, None)
    for tool in (resume, resume_async):
        assert arguments_to_body(tool, {"execution_id": execution_id, "input": text}) == (
            value,
            execution_id,
        )
        assert arguments_to_body(tool, {"execution_id": execution_id}) == (None, execution_id)
    assert arguments_to_body(status, {"execution_id": execution_id}) == (None, execution_id)


@pytest.mark.parametrize("text", ["{", "nul", "[1,]", "{'a': 1}"])
def test_bad_json_input_names_input(text):
    run, run_async, resume, resume_async, _ = tools_for([Endpoint("w", info("w", None))])
    cases = [
        (run, {"input": text}),
        (run_async, {"input": text}),
        (resume, {"execution_id": "e1", "input": text}),
        (resume_async, {"execution_id": "e1", "input": text}),
    ]
    for tool, arguments in cases:
        with pytest.raises(InputValidationError, match=r"^input: not valid JSON"):
            arguments_to_body(tool, arguments)


def test_dict_like_input_is_checked_against_the_workflow_schema():
    schema = {"type": "object", "additionalProperties": {"type": "integer"}}
    run = tools_for([Endpoint("w", info("w", schema))])[0]
    assert run.input_mode == "json" and run.input_schema["required"] == ["input"]
    assert arguments_to_body(run, {"input": '{"a": 1}'}) == ({"a": 1}, None)
    with pytest.raises(InputValidationError, match=r"^input\.a: "):
        arguments_to_body(run, {"input": '{"a": "x"}'})
    with pytest.raises(InputValidationError, match=r"^input: field required"):
        arguments_to_body(run, {})


def test_missing_and_unexpected_arguments_are_named():
    class Invoice(BaseModel):
        customer_id: str
        amount: float

    run, _, resume, _, status = tools_for(
        [Endpoint("invoice", info("invoice", Invoice.model_json_schema()))]
    )
    with pytest.raises(InputValidationError, match=r"^amount: field required$"):
        arguments_to_body(run, {"customer_id": "C-1"})
    with pytest.raises(InputValidationError, match=r"^execution_id: field required$"):
        arguments_to_body(status, {})
    with pytest.raises(InputValidationError, match=r"^colour: unexpected field$"):
        arguments_to_body(resume, {"execution_id": "e", "colour": "red"})


def test_clash_keeps_other_tools_and_is_reported_by_mcp_info():
    endpoints = (
        Endpoint("health", info("health", None)),
        Endpoint("x", info("x", None)),
        Endpoint("x_async", info("x_async", None)),
    )
    resolution = Resolution(ServiceDefinition("svc", namespaces=("ns",)), 1, endpoints)
    body = mcp_info(resolution, "http://127.0.0.1:9000/mcp")
    names = [tool["name"] for tool in body["tools"]]
    assert "x_async" not in names and "resume_x_async" not in names
    assert {"x", "resume_x", "status_x", "x_async_async", "status_x_async"} <= set(names)
    assert body["tool_clashes"] == [
        {"name": "resume_x_async", "workflows": ["x", "x_async"]},
        {"name": "x_async", "workflows": ["x", "x_async"]},
    ]
    assert body["reserved"] == ["health"]
    assert not any("health" in name for name in names)
    assert body["service"] == "svc" and body["mcp_url"] == "http://127.0.0.1:9000/mcp"
    assert all(set(tool) == {"name", "description", "input_schema"} for tool in body["tools"])


def test_description_comes_from_the_docstring():
    doc = "Create an invoice\n    for a customer.\n\n    Args: ignored detail."
    run, run_async, *_ = tools_for([Endpoint("invoice", info("invoice", None, doc))])
    assert run.description.startswith("Create an invoice for a customer.")
    assert "Args" not in run.description
    assert run_async.description.startswith("Create an invoice for a customer.")


def test_recursive_models_keep_their_definitions():
    class Node(BaseModel):
        value: int
        children: list[Node] = []

    class Tree(BaseModel):
        root: Node

    run = tools_for([Endpoint("t", info("t", Tree.model_json_schema()))])[0]
    jsonschema.Draft202012Validator.check_schema(run.input_schema)
    assert "Node" in run.input_schema["$defs"]
    tree = {"root": {"value": 1, "children": [{"value": 2, "children": []}]}}
    assert arguments_to_body(run, tree) == (tree, None)
    with pytest.raises(InputValidationError, match=r"root\.children\.0\.value"):
        arguments_to_body(run, {"root": {"value": 1, "children": [{"value": "x"}]}})
