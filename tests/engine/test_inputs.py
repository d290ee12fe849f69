"""Input types, schemas, conversion errors and JSON-able outputs."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any, TypedDict

import attrs
import pytest
from pydantic import BaseModel

from core.errors import InputValidationError
from engine.inputs import convert_input, input_schema, input_type, restore, to_json
from flux import ExecutionContext


class Order(BaseModel):
    customer_id: str
    amount: float


@dataclasses.dataclass
class Point:
    x: int
    y: int = 0


class Person(TypedDict):
    name: str
    age: int


@attrs.frozen
class Line:
    start: int
    tags: list[str] = attrs.Factory(list)


@attrs.frozen
class Shipment:
    line: Line
    note: str | None = None


async def typed(ctx: ExecutionContext[Order]): ...


async def untyped(ctx): ...


async def as_dict(ctx: ExecutionContext[dict]): ...


async def as_any(ctx: ExecutionContext[Any]): ...


async def bare(ctx: ExecutionContext): ...


def test_the_input_type_comes_from_the_context_annotation():
    assert input_type(typed) is Order
    for function in (untyped, as_dict, as_any, bare):
        assert input_type(function) is None


def test_raw_inputs_have_no_schema_and_pass_through():
    assert input_schema(None) is None
    body = {"anything": [1, "two"]}
    assert convert_input(None, body) is body


@pytest.mark.parametrize("tp", [Order, Point, Person, Line])
def test_typed_inputs_have_an_object_schema(tp):
    schema = input_schema(tp)
    assert schema["type"] == "object"
    assert set(schema["required"]) <= set(schema["properties"])


def test_schemas_name_the_fields():
    assert input_schema(Order)["properties"].keys() == {"customer_id", "amount"}
    assert input_schema(Order)["required"] == ["customer_id", "amount"]
    assert input_schema(Point)["required"] == ["x"]
    assert input_schema(Line)["required"] == ["start"]
    assert input_schema(Shipment)["properties"]["line"] == {"$ref": "#/$defs/Line"}


def test_bodies_convert_to_the_declared_types():
    assert convert_input(Order, {"customer_id": "c1", "amount": "12.5"}) == Order(
        customer_id="c1", amount=12.5
    )
    assert convert_input(Point, {"x": 1}) == Point(1, 0)
    assert convert_input(Person, {"name": "Ada", "age": "36"}) == {"name": "Ada", "age": 36}
    assert convert_input(Shipment, {"line": {"start": 3}}) == Shipment(Line(3))
    assert convert_input(list[Line], [{"start": 1}]) == [Line(1)]


def test_a_body_that_does_not_fit_gives_field_level_errors():
    with pytest.raises(InputValidationError) as caught:
        convert_input(Order, {"amount": "lots"})
    errors = caught.value.details["errors"]
    assert {tuple(e["loc"]) for e in errors} == {("customer_id",), ("amount",)}
    assert {e["type"] for e in errors} == {"missing", "float_parsing"}
    assert all(e["msg"] for e in errors)
    assert caught.value.code == "invalid_input"


def test_nested_attrs_errors_point_at_the_nested_field():
    with pytest.raises(InputValidationError) as caught:
        convert_input(Shipment, {"line": {"start": "x"}})
    assert [e["loc"] for e in caught.value.details["errors"]] == [["line", "start"]]


def test_a_non_object_body_for_a_model_is_refused():
    with pytest.raises(InputValidationError):
        convert_input(Order, None)


def test_outputs_become_json_values():
    value = {
        "order": Order(customer_id="c", amount=1.0),
        "point": Point(1, 2),
        "line": Line(1, ["a"]),
        "when": datetime.date(2024, 1, 2),
    }
    assert to_json(value) == {
        "order": {"customer_id": "c", "amount": 1.0},
        "point": {"x": 1, "y": 2},
        "line": {"start": 1, "tags": ["a"]},
        "when": "2024-01-02",
    }


def test_unserialisable_outputs_raise_type_error():
    with pytest.raises(TypeError):
        to_json(object())


def test_logged_results_are_rebuilt_from_their_declared_type():
    assert restore(Order, {"customer_id": "c", "amount": 2}) == Order(customer_id="c", amount=2)
    assert restore(Line, {"start": 1, "tags": []}) == Line(1)
    assert restore(None, {"a": 1}) == {"a": 1}
