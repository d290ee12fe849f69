"""Relaying the main server's answers through the standalone process: whole bodies and event
streams with `status_url`/`resume_url` pointed at the process's own routes, and the headers
that may cross a hop (RFC 9110 §7.6.1)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from core import errors
from core.responses import error_body

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "trailers",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
    }
)
# Recomputed or owned by this hop; Accept-Encoding is dropped so the body arrives as sent.
_NOT_FORWARDED_REQUEST = HOP_BY_HOP | {"host", "content-length", "accept-encoding"}
_NOT_FORWARDED_RESPONSE = HOP_BY_HOP | {"content-length", "content-encoding", "server", "date"}
# CORS belongs to each hop: this process answers browsers under its own `cors` settings.
_NOT_FORWARDED_RESPONSE |= {
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-expose-headers",
}


def rewrite_urls(body: Any, workflow: str) -> Any:
    """Point `status_url`/`resume_url` of a detailed body at the standalone routes."""
    if not isinstance(body, dict) or not isinstance(body.get("execution_id"), str):
        return body
    execution = quote(body["execution_id"], safe="")
    changed = dict(body)
    for key, verb in (("status_url", "status"), ("resume_url", "resume")):
        if changed.get(key):
            changed[key] = f"/{workflow}/{verb}/{execution}"
    return changed


async def relay_whole(
    upstream: aiohttp.ClientResponse, workflow: str, deadline: float
) -> web.StreamResponse:
    try:
        async with asyncio.timeout_at(deadline):
            raw = await upstream.read()
    except TimeoutError as exc:
        raise upstream_timeout() from exc
    except aiohttp.ClientError as exc:
        raise upstream_unavailable(exc, str(upstream.url.origin())) from exc
    if upstream.content_type == "application/json" and b"_url" in raw:
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        rewritten = rewrite_urls(parsed, workflow)
        if rewritten is not parsed:
            raw = json.dumps(rewritten).encode()
    return web.Response(status=upstream.status, body=raw, headers=response_headers(upstream))


async def relay_stream(
    request: web.Request, upstream: aiohttp.ClientResponse, workflow: str
) -> web.StreamResponse:
    response = web.StreamResponse(status=upstream.status, headers=response_headers(upstream))
    await response.prepare(request)
    buffer = b""
    try:
        async for chunk in upstream.content.iter_any():
            buffer += chunk
            events, buffer = _split_events(buffer)
            if events:
                await response.write(b"".join(_rewrite_event(e, workflow) for e in events))
    except (TimeoutError, aiohttp.ClientError):
        # Headers are gone already: the best left is to say so in the stream itself.
        failure = errors.UpstreamUnavailable("the Flux server closed the stream early")
        await response.write(_sse("error", error_body(failure)))
    else:
        if buffer:
            await response.write(_rewrite_event(buffer, workflow))
    await response.write_eof()
    return response


def _split_events(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete SSE events (each with its blank-line terminator) and the unfinished rest."""
    normalised = buffer.replace(b"\r\n", b"\n")
    parts = normalised.split(b"\n\n")
    rest = parts.pop()
    return [part + b"\n\n" for part in parts], rest


def _rewrite_event(event: bytes, workflow: str) -> bytes:
    if b"_url" not in event:
        return event
    lines = event.split(b"\n")
    for index, line in enumerate(lines):
        if line.startswith(b"data:"):
            try:
                payload = json.loads(line[5:])
            except ValueError:
                continue
            rewritten = rewrite_urls(payload, workflow)
            if rewritten is not payload:
                lines[index] = b"data: " + json.dumps(rewritten).encode()
    return b"\n".join(lines)


def _sse(kind: str, data: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def _forwardable(
    headers: Mapping[str, str], dropped: frozenset[str] | set[str]
) -> CIMultiDict[str]:
    """`headers` less hop-by-hop ones: the fixed set, those the Connection header names, and
    any Proxy-* header."""
    named_by_connection = {
        token.strip().lower() for token in headers.get("Connection", "").split(",")
    }
    kept: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in dropped or lowered in named_by_connection or lowered.startswith("proxy-"):
            continue
        kept.add(name, value)
    return kept


def forward_request_headers(request: web.Request) -> CIMultiDict[str]:
    headers = _forwardable(request.headers, _NOT_FORWARDED_REQUEST)
    if request.remote:
        prior = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{prior}, {request.remote}" if prior else request.remote
    return headers


def response_headers(upstream: aiohttp.ClientResponse) -> CIMultiDict[str]:
    return _forwardable(upstream.headers, _NOT_FORWARDED_RESPONSE)


def upstream_unavailable(exc: Exception, server_url: str) -> errors.UpstreamUnavailable:
    return errors.UpstreamUnavailable(
        f"the Flux server at {server_url} is not reachable ({exc.__class__.__name__})"
    )


def upstream_timeout() -> errors.UpstreamTimeout:
    return errors.UpstreamTimeout("the Flux server did not answer in time")
