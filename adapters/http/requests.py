"""Parsing of what a caller sends: JSON bodies, modes and query parameters, with clear errors.

Every route reads its body and query through these functions, so bad input is refused the same
way everywhere (docs/http-api.md, "Input limits"):

- a body is JSON (`Content-Type: application/json`, a `+json` type, or none at all), else 415;
- at most `MAX_JSON_DEPTH` levels of arrays and objects, checked before `json.loads` recurses;
- no `NaN`, `Infinity`, `-Infinity`, nor a number that overflows to infinity (`1e400`);
- one parser per query parameter (`detailed`, `version`, `namespace`), a repeat refused.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import HttpVersion11, hdrs, web
from multidict import MultiMapping

from adapters.http.errors import error_response
from core.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from core.idempotency import KEY_HEADER, validate_key
from core.jsontext import loads
from core.names import validate_namespace

MODES = ("sync", "async", "stream")
MAX_VERSION = 2**63 - 1  # a signed 64-bit integer: what every store keeps
JSON_TYPE = "application/json"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_VERSION = re.compile(r"[0-9]{1,19}")
MAX_PREFER_WAIT = 86400
_WAIT = re.compile(r"[0-9]{1,5}")  # ASCII digits: str.isdigit() also takes '²', '①', '٣'


# -- bodies ------------------------------------------------------------------------------------


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body exceeds the limit of {limit} bytes", limit=limit)


async def read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise too_large(limit) from exc
    if len(raw) > limit:
        raise too_large(limit)
    return raw


def expect_handler(limit: int) -> Callable[[web.Request], Awaitable[web.StreamResponse | None]]:
    """aiohttp's `expect_handler` for `Expect: 100-continue`: a declared body over `limit` gets
    its 413 at once, before the caller uploads it; anything else gets aiohttp's own answer."""

    async def handle(request: web.Request) -> web.StreamResponse | None:
        if request.content_length is not None and request.content_length > limit:
            response = error_response(too_large(limit))
            response.force_close()  # the body we refused is never read
            return response
        expect = request.headers.get(hdrs.EXPECT, "")
        if request.version == HttpVersion11:
            if expect.lower() != "100-continue":
                raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the answer's own body has not started
        return None

    return handle


def check_json_type(request: web.Request) -> None:
    """A body must be JSON: `application/json`, any `application/*+json` type, or no
    Content-Type at all (curl-friendly); a form-encoded or text body is refused with 415."""
    if hdrs.CONTENT_TYPE not in request.headers:
        return
    ctype = request.content_type.lower()
    if ctype == JSON_TYPE or (ctype.startswith("application/") and ctype.endswith("+json")):
        return
    raise UnsupportedMediaType(
        f"unsupported Content-Type {ctype!r}: send {JSON_TYPE}", accepted=JSON_TYPE
    )


async def read_json(request: web.Request, limit: int, *, required: bool = False) -> Any:
    """The JSON body; an empty body is `None` (a workflow without input) unless required."""
    raw = await read_body(request, limit)
    if not raw.strip():
        if required:
            raise InvalidRequest("a JSON body is required")
        return None
    check_json_type(request)
    return loads(raw)


async def read_json_object(request: web.Request, limit: int) -> dict[str, Any]:
    body = await read_json(request, limit, required=True)
    if not isinstance(body, dict):
        raise InvalidRequest(f"expected a JSON object, got {type(body).__name__}")
    return body


# -- path and query --------------------------------------------------------------------------


def mode_of(request: web.Request) -> str:
    mode = request.match_info.get("mode", "sync")
    if mode not in MODES:
        raise InvalidRequest(f"unknown mode {mode!r}: use one of {', '.join(MODES)}", mode=mode)
    return mode


def _single(query: MultiMapping[str] | Mapping[str, str], name: str) -> str | None:
    if isinstance(query, MultiMapping):
        values = query.getall(name, [])
        if len(values) > 1:
            raise InvalidRequest(f"query parameter {name!r} given more than once", parameter=name)
        return values[0] if values else None
    return query.get(name)


def parse_flag(query: MultiMapping[str] | Mapping[str, str], name: str) -> bool:
    """A boolean query parameter: absent is false; `1/true/yes/on`, `0/false/no/off` or empty."""
    value = _single(query, name)
    if value is None:
        return False
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise InvalidRequest(
        f"query parameter {name!r} must be true or false, got {value!r}", parameter=name
    )


def parse_version(query: MultiMapping[str] | Mapping[str, str]) -> int | None:
    """`version`: ASCII digits, 1 to 2**63-1; absent is None (the latest)."""
    value = _single(query, "version")
    if value is None:
        return None
    if not _VERSION.fullmatch(value) or not 1 <= int(value) <= MAX_VERSION:
        raise InvalidRequest(
            f"query parameter 'version' must be an integer from 1 to {MAX_VERSION}, got {value!r}",
            parameter="version",
        )
    return int(value)


def parse_namespace(query: MultiMapping[str] | Mapping[str, str]) -> str | None:
    """`namespace`: a namespace name, validated as everywhere else; absent is None (all)."""
    value = _single(query, "namespace")
    return None if value is None else validate_namespace(value)


def flag(request: web.Request, name: str) -> bool:
    return parse_flag(request.query, name)


def version_of(request: web.Request) -> int | None:
    return parse_version(request.query)


def namespace_of(request: web.Request) -> str | None:
    return parse_namespace(request.query)


def detailed_of(request: web.Request, mode: str) -> bool:
    """`detailed`, parsed on every route and mode; only a sync answer can be the raw output."""
    detailed = flag(request, "detailed")
    return detailed if mode == "sync" else True


def parse_prefer_wait(values: list[str]) -> int | None:
    """`wait=N` among the comma-separated preferences of `Prefer` headers (RFC 7240): N whole
    seconds, 0 to 86400. A malformed or out-of-range value is ignored, as RFC 7240 asks of a
    preference a server does not understand; the first valid `wait` wins."""
    for value in values:
        for preference in value.split(","):
            name, _, rest = preference.partition("=")
            if name.strip().lower() != "wait":
                continue
            token = rest.split(";", 1)[0].strip().strip('"')
            if _WAIT.fullmatch(token) and int(token) <= MAX_PREFER_WAIT:
                return int(token)
    return None


def prefer_wait_of(request: web.Request) -> int | None:
    return parse_prefer_wait(request.headers.getall("Prefer", []))


def idempotency_key_of(request: web.Request) -> str | None:
    """The `Idempotency-Key` header: absent is None; sent twice, or malformed, is a 400."""
    values = request.headers.getall(KEY_HEADER, [])
    if len(values) > 1:
        raise InvalidRequest(f"the {KEY_HEADER} header given more than once", header=KEY_HEADER)
    return validate_key(values[0]) if values else None
