"""Parsing of what a caller sends: JSON bodies, modes and query flags, with clear errors."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from core.errors import InvalidRequest, PayloadTooLarge

MODES = ("sync", "async", "stream")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


async def read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes", limit=limit)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(
            f"request body exceeds the limit of {limit} bytes", limit=limit
        ) from exc
    if len(raw) > limit:
        raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes", limit=limit)
    return raw


async def read_json(request: web.Request, limit: int, *, required: bool = False) -> Any:
    """The JSON body; an empty body is `None` (a workflow without input) unless required."""
    raw = await read_body(request, limit)
    if not raw.strip():
        if required:
            raise InvalidRequest("a JSON body is required")
        return None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest(f"malformed JSON body: {exc}") from None


async def read_json_object(request: web.Request, limit: int) -> dict[str, Any]:
    body = await read_json(request, limit, required=True)
    if not isinstance(body, dict):
        raise InvalidRequest(f"expected a JSON object, got {type(body).__name__}")
    return body


def mode_of(request: web.Request) -> str:
    mode = request.match_info.get("mode", "sync")
    if mode not in MODES:
        raise InvalidRequest(f"unknown mode {mode!r}: use one of {', '.join(MODES)}", mode=mode)
    return mode


def flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name)
    if value is None:
        return False
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise InvalidRequest(f"query parameter {name!r} must be true or false, got {value!r}")


def version_of(request: web.Request) -> int | None:
    value = request.query.get("version")
    if value is None:
        return None
    if not value.isdigit() or int(value) < 1:
        raise InvalidRequest(f"query parameter 'version' must be a positive integer, got {value!r}")
    return int(value)
