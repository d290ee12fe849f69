"""The JSON of aiohttp's own refusals and the access log's execution id (adapters/http/errors)."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, LineTooLong
from aiohttp.test_utils import make_mocked_request

from adapters.http.errors import execution_id_of, protocol_error_body


def test_parser_refusals_name_the_fault_not_the_input():
    body = protocol_error_body(400, LineTooLong("a" * 9000, "8190"))
    assert body == {
        "error": "invalid_request",
        "message": "the request line or a header is too long",
    }
    body = protocol_error_body(400, BadHttpMethod("BREW"))
    assert "BREW" not in body["message"]
    assert protocol_error_body(500, None)["error"] == "internal_error"
    assert protocol_error_body(504, None)["error"] == "gateway_timeout"


def test_execution_id_from_a_detailed_body_or_nothing():
    request = make_mocked_request("POST", "/echo")
    compact = web.Response(body=b'{"execution_id":"abc-123","state":"CREATED"}')
    spaced = web.Response(body=b'{"execution_id": "abc-123", "state": "CREATED"}')
    assert execution_id_of(request, compact) == "abc-123"
    assert execution_id_of(request, spaced) == "abc-123"
    assert execution_id_of(request, web.Response(body=b'{"echo": 1}')) is None
    assert execution_id_of(request, web.Response(body=b'{"execution_id":"a\\nb"}')) is None
    assert execution_id_of(request, web.StreamResponse()) is None


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], None),
        (["wait=5"], 5),
        (["respond-async, wait=10"], 10),
        (["Wait = 3 ; x"], 3),
        (['wait="7"'], 7),
        (["wait=0"], 0),
        (["wait=86400"], 86400),
        (["wait=86401"], None),
        (["wait=-1"], None),
        (["wait=1.5"], None),
        (["wait=soon", "wait=2"], 2),
        (["handling=lenient"], None),
    ],
)
def test_prefer_wait_is_parsed_per_rfc_7240_and_ignored_when_malformed(values, expected):
    from adapters.http.requests import parse_prefer_wait

    assert parse_prefer_wait(values) == expected
