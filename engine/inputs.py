"""Workflow inputs and outputs: the declared input type, its JSON schema, body conversion, and
JSON-able results.

pydantic does the validation and the schemas (models, dataclasses, TypedDicts, plain types);
attrs classes go through a pydantic model built from their fields, so their errors and schemas
have the same shape, and cattrs builds the attrs instance from the validated data.
"""

from __future__ import annotations

import functools
import inspect
import math
import operator
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import cattrs
import pydantic
import typing_extensions
from pydantic_core import PydanticSerializationError, to_jsonable_python

from core.errors import InputValidationError
from flux.context import ExecutionContext


def _cached(function: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A bounded cache (modules come and go with versions) that lets unhashable types (some Annotated metadata) through uncached."""
    cached = functools.lru_cache(maxsize=1024)(function)

    @functools.wraps(function)
    def call(tp: Any) -> Any:
        try:
            return cached(tp)
        except TypeError as exc:
            if "unhashable" not in str(exc):
                raise
            return function(tp)

    return call


_RAW = (None, Any, object, dict, Mapping, typing.Dict)  # noqa: UP006 - matched by identity
_converter = cattrs.Converter()


def input_type(function: Callable[..., Any]) -> Any:
    """The `T` of the workflow's `ctx: ExecutionContext[T]`; None for a raw JSON input."""
    parameters = list(inspect.signature(function).parameters.values())
    if not parameters:
        return None
    try:
        hints = typing.get_type_hints(function, include_extras=False)
    except Exception:  # an unresolvable annotation: fall back to raw JSON
        return None
    annotation = hints.get(parameters[0].name)
    if annotation is None or annotation is ExecutionContext:
        return None
    if typing.get_origin(annotation) is ExecutionContext:
        (argument,) = typing.get_args(annotation)
        return _normalise(argument)
    return None


def _normalise(tp: Any) -> Any:
    if tp in _RAW or isinstance(tp, typing.TypeVar):
        return None
    if typing.get_origin(tp) in (dict, Mapping) and typing.get_args(tp)[1:] == (Any,):
        return None
    return tp


def input_schema(tp: Any) -> dict | None:
    """JSON schema of an input type (None for raw JSON)."""
    if tp is None:
        return None
    return _adapter(tp).json_schema()


def convert_input(tp: Any, body: Any) -> Any:
    """The body as an instance of `tp`; raises InputValidationError with field-level errors."""
    if tp is None:
        return body
    try:
        return _validate(tp, body)
    except pydantic.ValidationError as exc:
        errors = [
            {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
            for error in exc.errors(include_url=False)
        ]
        count = len(errors)
        raise InputValidationError(
            f"input does not match {_type_name(tp)}: {count} error{'s' if count != 1 else ''}",
            errors=errors,
        ) from None


def _validate(tp: Any, value: Any) -> Any:
    adapter = _adapter(tp)
    validated = adapter.validate_python(value)
    if _has_attrs(tp):
        # The generated models validated the data; the caller wants its own attrs classes.
        return _converter.structure(adapter.dump_python(validated), tp)
    return validated


def to_json(value: Any) -> Any:
    """A JSON-able copy of a workflow or task result (models, dataclasses, attrs, dates...).

    A non-finite number (NaN, an infinity) is not JSON: it raises ValueError, so the run (or
    the task) fails with a clear error instead of answering `NaN` nobody can parse."""
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, float):
        return _finite(value)
    try:
        result = to_jsonable_python(value, fallback=_fallback)
    except PydanticSerializationError as exc:
        raise TypeError(f"result is not JSON serializable: {exc}") from None
    bad = _non_finite(result)
    if bad is not None:
        raise _not_json(bad)
    return result


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise _not_json(value)
    return value


def _not_json(value: float) -> ValueError:
    name = "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    return ValueError(f"output is not valid JSON: {name} (JSON has no non-finite numbers)")


def _non_finite(value: Any) -> float | None:
    """The first NaN or infinity inside a JSON-able value, found without recursion."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return item
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return None


def restore(tp: Any, value: Any) -> Any:
    """Rebuild a task result of declared type `tp` from its logged JSON (best effort)."""
    if tp is None or value is None:
        return value
    try:
        return _validate(tp, value)
    except Exception:
        return value


def return_type(function: Callable[..., Any]) -> Any:
    """A task's declared return type, or None when it has none worth restoring."""
    try:
        hint = typing.get_type_hints(function).get("return")
    except Exception:
        return None
    if hint is None or hint is type(None) or _normalise(hint) is None:
        return None
    if inspect.iscoroutinefunction(function) and typing.get_origin(hint) is typing.Coroutine:
        return None
    return hint


def _is_attrs(tp: Any) -> bool:
    return isinstance(tp, type) and attrs.has(tp)


def _fallback(value: Any) -> Any:
    if attrs.has(type(value)):
        return _converter.unstructure(value)
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or repr(tp)


@_cached
def _has_attrs(tp: Any) -> bool:
    return _is_attrs(tp) or any(_has_attrs(arg) for arg in typing.get_args(tp))


@_cached
def _adapter(tp: Any) -> pydantic.TypeAdapter:
    return pydantic.TypeAdapter(_pydantic_type(tp))


@_cached
def _pydantic_type(tp: Any) -> Any:
    """`tp` with attrs classes swapped for generated pydantic models and stdlib TypedDicts for
    typing_extensions ones (pydantic refuses `typing.TypedDict` before Python 3.12)."""
    if _is_attrs(tp):
        return _attrs_model(tp)
    if typing_extensions.is_typeddict(tp) and type(tp) is not type(typing_extensions.TypedDict):
        return _typeddict(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is None or not args:
        return tp
    swapped = tuple(_pydantic_type(a) if not isinstance(a, list) else a for a in args)
    if swapped == args:
        return tp
    if origin in (typing.Union, types.UnionType):
        return functools.reduce(operator.or_, swapped)
    try:
        return tp.copy_with(swapped) if hasattr(tp, "copy_with") else origin[swapped]
    except TypeError:
        return tp


def _attrs_model(cls: type) -> type[pydantic.BaseModel]:
    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {}
    for field in attrs.fields(cls):
        tp = _pydantic_type(hints.get(field.name, field.type or Any))
        name = field.alias or field.name
        if field.default is attrs.NOTHING:
            fields[name] = (tp, ...)
        elif isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
            factory = field.default.factory
            fields[name] = (tp, pydantic.Field(default_factory=factory))
        else:
            fields[name] = (tp, field.default)
    return pydantic.create_model(cls.__name__, __doc__=cls.__doc__, **fields)


def _typeddict(tp: Any) -> Any:
    hints = typing.get_type_hints(tp, include_extras=True)
    required = getattr(tp, "__required_keys__", frozenset(hints))
    fields = {
        key: _pydantic_type(hint)
        if key in required
        else typing_extensions.NotRequired[_pydantic_type(hint)]
        for key, hint in hints.items()
    }
    return typing_extensions.TypedDict(tp.__name__, fields)  # type: ignore[operator]
