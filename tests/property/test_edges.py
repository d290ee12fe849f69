"""Properties of the edges where caller input comes in: names, JSON bodies, query parameters and
what a workflow hands back. Bad input is refused by one validator, whatever field carries it."""

from __future__ import annotations

import json
import math
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import MultiDict

from adapters.http import requests as parse
from core import jsontext
from core.errors import FluxError, InvalidName, InvalidRequest
from core.model import WorkflowRef
from core.names import validate_namespace, validate_service_name, validate_workflow_name
from core.services import parse_new_service, parse_service_update
from engine.inputs import to_json

CONTROL = st.one_of(
    st.sampled_from("\n\r\t\x00\x1b\x7f\x85"),
    st.characters(categories=["Cc"]),
)


@st.composite
def with_control(draw: st.DrawFn, base: st.SearchStrategy[str]) -> str:
    """A (possibly valid) name with a control character put anywhere, at its end included."""
    text = draw(base)
    at = draw(st.integers(0, len(text)))
    return text[:at] + draw(CONTROL) + text[at:]


VALID_SLUG = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True)
VALID_IDENT = st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True).filter(
    lambda s: s not in {"if", "in", "is", "or", "and", "as", "def", "del", "for", "not", "try"}
)
BAD_SLUG = with_control(VALID_SLUG)
BAD_IDENT = with_control(VALID_IDENT)
BAD_REF = st.one_of(
    st.builds(lambda ns, n: f"{ns}/{n}", BAD_SLUG, VALID_IDENT),
    st.builds(lambda ns, n: f"{ns}/{n}", VALID_SLUG, BAD_IDENT),
    BAD_IDENT,
)
UPDATE_FIELDS = [
    "add_namespaces",
    "add_workflows",
    "add_exclusions",
    "remove_namespaces",
    "remove_workflows",
    "remove_exclusions",
]


def test_control_strategy_covers_cc() -> None:
    assert all(unicodedata.category(c) == "Cc" for c in "\n\r\t\x00\x7f\x85")


# -- names -------------------------------------------------------------------------------------


@given(BAD_SLUG)
def test_control_characters_are_never_a_service_name_or_namespace(text: str) -> None:
    with pytest.raises(InvalidName):
        validate_service_name(text)
    with pytest.raises(InvalidName):
        validate_namespace(text)
    with pytest.raises(InvalidName):
        parse_new_service({"name": text})
    with pytest.raises(InvalidName):
        parse_new_service({"name": "svc", "namespaces": [text]})


@given(BAD_IDENT)
def test_control_characters_are_never_a_workflow_name(text: str) -> None:
    with pytest.raises(InvalidName):
        validate_workflow_name(text)


@given(BAD_REF)
def test_control_characters_are_never_in_a_ref(text: str) -> None:
    with pytest.raises(InvalidName):
        WorkflowRef.parse(text)
    for key in ("workflows", "exclusions"):
        with pytest.raises(InvalidName):
            parse_new_service({"name": "svc", key: [text]})


@given(st.sampled_from(UPDATE_FIELDS), BAD_SLUG, BAD_REF)
def test_every_update_field_refuses_control_characters(key: str, slug: str, ref: str) -> None:
    value = slug if key.endswith("_namespaces") else ref
    with pytest.raises(InvalidName):
        parse_service_update({key: [value]})


@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\t", "\x00"])
def test_a_trailing_newline_is_not_part_of_a_name(suffix: str) -> None:
    """`re.match` with `$` matches before a final newline: names are matched whole."""
    for check in (validate_service_name, validate_namespace, validate_workflow_name):
        with pytest.raises(InvalidName):
            check("billing" + suffix)
    with pytest.raises(InvalidName):
        WorkflowRef.parse("billing/invoice" + suffix)


def test_registration_refuses_a_name_with_a_newline() -> None:
    from flux import workflow

    async def run(ctx):  # pragma: no cover - never called
        return None

    for options in ({"name": "run\n"}, {"namespace": "billing\n"}):
        with pytest.raises(InvalidName):
            workflow.with_options(**options)(run)


# -- JSON bodies -------------------------------------------------------------------------------


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.sampled_from('ab"\\[]{}\n\u00e9'), max_size=8),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(alphabet='k[]{}"\\', max_size=3), children, max_size=3)
    ),
    max_leaves=40,
)


@given(JSON_VALUES, st.integers(1, 12))
def test_the_depth_scan_agrees_with_the_parsed_depth(value: object, limit: int) -> None:
    raw = json.dumps(value).encode()
    assert jsontext.too_deep(raw, limit) == (_depth(value) > limit)


@given(JSON_VALUES)
def test_bodies_within_limits_parse_as_json_loads_does(value: object) -> None:
    raw = json.dumps(value).encode()
    assert jsontext.loads(raw) == json.loads(raw)


@given(st.integers(jsontext.MAX_JSON_DEPTH + 1, 20_000), st.sampled_from(["[", '{"a":']))
def test_deep_nesting_is_refused_without_recursion(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    with pytest.raises(InvalidRequest, match="deeper than"):
        jsontext.loads((opener * depth + "1" + closer * depth).encode())


@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_parse_or_raise_invalid_request(raw: bytes) -> None:
    try:
        jsontext.loads(raw)
    except InvalidRequest:
        pass


@given(
    JSON_VALUES,
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1.5e309"]),
)
def test_non_finite_numbers_are_refused_anywhere_in_a_body(value: object, bad: str) -> None:
    raw = json.dumps({"ok": value, "bad": [bad]}).replace(f'["{bad}"]', f"[{bad}]")
    with pytest.raises(InvalidRequest, match="malformed JSON"):
        jsontext.loads(raw.encode())


# -- query parameters --------------------------------------------------------------------------


@given(st.text(max_size=30))
def test_version_is_ascii_digits_within_64_bits(text: str) -> None:
    try:
        version = parse.parse_version(MultiDict(version=text))
    except InvalidRequest:
        assert not (text.isascii() and text.isdigit() and 1 <= int(text) < 2**63)
    else:
        assert text.isascii() and text.isdigit()
        assert version == int(text) and 1 <= version <= 2**63 - 1


@pytest.mark.parametrize(
    "text", ["9223372036854775808", "1" * 23, "²", "①", "٣", "３", "0", "-1", "+1", " 1", "1\n"]
)
def test_version_refusals(text: str) -> None:
    with pytest.raises(InvalidRequest):
        parse.parse_version(MultiDict(version=text))


def test_version_bounds() -> None:
    assert parse.parse_version(MultiDict(version="9223372036854775807")) == 2**63 - 1
    assert parse.parse_version(MultiDict(version="1")) == 1
    assert parse.parse_version(MultiDict()) is None


@given(st.text(max_size=12))
def test_detailed_is_a_boolean_or_refused(text: str) -> None:
    try:
        value = parse.parse_flag(MultiDict(detailed=text), "detailed")
    except InvalidRequest:
        assert text.lower() not in {"1", "true", "yes", "on", "0", "false", "no", "off", ""}
    else:
        assert value is (text.lower() in {"1", "true", "yes", "on"})


@pytest.mark.parametrize("name", ["detailed", "version", "namespace"])
def test_a_repeated_query_parameter_is_refused(name: str) -> None:
    query = MultiDict([(name, "1"), (name, "1")])
    with pytest.raises(InvalidRequest, match="more than once"):
        {
            "detailed": lambda: parse.parse_flag(query, "detailed"),
            "version": lambda: parse.parse_version(query),
            "namespace": lambda: parse.parse_namespace(query),
        }[name]()


@given(st.text(max_size=20))
def test_the_namespace_filter_is_a_namespace_name(text: str) -> None:
    try:
        assert parse.parse_namespace(MultiDict(namespace=text)) == validate_namespace(text)
    except FluxError:
        with pytest.raises(InvalidName):
            validate_namespace(text)


# -- outputs -----------------------------------------------------------------------------------


@given(JSON_VALUES, st.sampled_from([math.nan, math.inf, -math.inf]))
def test_a_non_finite_output_is_never_json(value: object, bad: float) -> None:
    with pytest.raises(ValueError, match="output is not valid JSON"):
        to_json({"ok": value, "bad": [bad]})
    with pytest.raises(ValueError, match="output is not valid JSON"):
        to_json(bad)


@given(JSON_VALUES)
def test_finite_outputs_pass_unchanged(value: object) -> None:
    assert to_json(value) == value
