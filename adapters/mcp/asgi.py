"""Serve one ASGI application from inside an aiohttp handler.

The MCP SDK's streamable-HTTP transport speaks only ASGI. Off-the-shelf bridges let
`receive()` return at once after the body, which makes SSE responses spin; here `receive()`
blocks until the client goes away or the response is complete, as ASGI servers do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from aiohttp import web

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]

log = logging.getLogger(__name__)

# How often a waiting `receive()` looks at the socket; aiohttp has no disconnect callback.
DISCONNECT_POLL_SECONDS = 0.2
# How long a cancelled handler lets the application wind down after `http.disconnect`.
SHUTDOWN_GRACE_SECONDS = 5.0


def build_scope(request: web.Request, extra: Mapping[str, Any] | None) -> Scope:
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport else None
    sock = transport.get_extra_info("sockname") if transport else None
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": f"{request.version.major}.{request.version.minor}",
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.raw_path.split("?", 1)[0].encode("latin-1"),
        "query_string": request.query_string.encode("latin-1"),
        "root_path": "",
        "headers": [(name.lower(), value) for name, value in request.raw_headers],
        "client": tuple(peer[:2]) if isinstance(peer, tuple) else None,
        "server": tuple(sock[:2]) if isinstance(sock, tuple) else None,
        "state": {},
    }
    scope.update(extra or {})
    return scope


class _Exchange:
    """One request/response pair between aiohttp and the ASGI application."""

    def __init__(self, request: web.Request, body: bytes) -> None:
        self.request = request
        self.body: bytes | None = body
        self.response: web.StreamResponse | None = None
        self.done = asyncio.Event()  # response complete, app finished or client gone

    def client_gone(self) -> bool:
        transport = self.request.transport
        return transport is None or transport.is_closing()

    async def receive(self) -> Message:
        if self.body is not None:
            body, self.body = self.body, None
            return {"type": "http.request", "body": body, "more_body": False}
        while not self.done.is_set() and not self.client_gone():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), DISCONNECT_POLL_SECONDS)
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            response = web.StreamResponse(status=message["status"])
            for name, value in message.get("headers", ()):
                response.headers.add(_text(name), _text(value))
            self.response = response
            if not self.client_gone():
                await response.prepare(self.request)
        elif kind == "http.response.body":
            sent = self.response
            if sent is None or not sent.prepared or self.client_gone():
                return  # the client left: drop what the application still writes
            try:
                body = message.get("body", b"")
                if body:
                    await sent.write(body)
                if not message.get("more_body", False):
                    await sent.write_eof()
                    self.done.set()
            except (ConnectionError, RuntimeError) as exc:
                log.debug("dropping ASGI response body: %s", exc)
                self.done.set()


def _text(value: bytes | str) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


async def serve_asgi(
    app: ASGIApp, request: web.Request, *, scope: Mapping[str, Any] | None = None
) -> web.StreamResponse:
    """Run `app` for `request` and return the (already sent) response. `scope` adds keys to the
    ASGI scope, e.g. `user`/`auth` once the caller is authenticated."""
    body = await request.read()
    exchange = _Exchange(request, body)
    full_scope = build_scope(request, scope)

    async def run() -> None:
        try:
            await app(full_scope, exchange.receive, exchange.send)
        finally:
            exchange.done.set()

    # A handler cancelled by the server (client gone, test server shutting down) must not tear
    # the application's task groups apart mid-write: the app runs in its own task, is told the
    # client disconnected, and gets a bounded grace period to finish.
    task = asyncio.create_task(run())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        exchange.done.set()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(task), SHUTDOWN_GRACE_SECONDS)
        if not task.done():
            task.cancel()
        raise
    response = exchange.response
    if response is None:
        return web.json_response(
            {"error": "internal_error", "message": "the MCP transport sent no response"}, status=500
        )
    if response.prepared and not exchange.client_gone():
        with contextlib.suppress(ConnectionError, RuntimeError):
            await response.write_eof()
    return response
