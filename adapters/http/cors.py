"""CORS for the routes browsers call: off unless `cors.allowed_origins` lists origins ("*": any).

Two parts, installed together by `install_cors`:

- a middleware answers a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
  on a covered route: 204 with what may be sent, or 403 JSON for an origin not allowed;
- a response-prepare hook adds `Access-Control-Allow-Origin` and the exposed headers to every
  answer of a covered route to an allowed origin. It runs as headers are sent, so streams (their
  headers go out before the first event) and error answers get them too.

The allowed origin is echoed (never `*`) with `Vary: Origin`, so a cache keeps answers for
different origins apart. A disallowed origin gets no CORS header at all: the browser refuses.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from attrs import frozen

from adapters.http.errors import Handler
from core.errors import Forbidden

ALLOW_METHODS = "GET, POST, OPTIONS"
ALLOW_HEADERS = (
    "Content-Type, Authorization, Idempotency-Key, Prefer, Last-Event-ID, Flux-Callback-Url"
)
EXPOSE_HEADERS = "Flux-Execution-Id, Idempotent-Replayed, Preference-Applied"
MAX_AGE = "600"  # seconds a browser may keep a preflight's answer

# The main server's call routes: every route of a service endpoint, and the by-ref call routes
# (`/workflows/{namespace}/{name}` itself, the catalog's show and delete, is not one).
_SERVER_CALL_ROUTE = re.compile(
    r"/services/[^/]+/[^/]+(/.*)?|/workflows/[^/]+/[^/]+/(run|resume|status|cancel|events)(/.*)?"
)


@frozen
class CorsPolicy:
    allowed_origins: tuple[str, ...]
    covers: Callable[[str], bool]  # whether a request path is one of the covered routes

    def allows(self, origin: str) -> bool:
        return "*" in self.allowed_origins or origin in self.allowed_origins


def server_call_routes(mount: str = "") -> Callable[[str], bool]:
    """The main server's call routes, below `mount` when it is embedded under one."""
    prefix = mount.rstrip("/")

    def covers(path: str) -> bool:
        if not path.startswith(prefix):
            return False
        return _SERVER_CALL_ROUTE.fullmatch(path[len(prefix) :]) is not None

    return covers


def every_route(path: str) -> bool:
    """The standalone process: all of its routes serve the one service."""
    return True


def install_cors(
    app: web.Application, allowed_origins: tuple[str, ...], covers: Callable[[str], bool]
) -> None:
    """Turn CORS on for `app` (before it starts) if any origin is allowed; else do nothing."""
    if not allowed_origins:
        return
    policy = CorsPolicy(tuple(allowed_origins), covers)
    app.middlewares.append(_preflight(policy))
    app.on_response_prepare.append(_add_headers(policy))


def _preflight(policy: CorsPolicy) -> Middleware:
    @web.middleware
    async def preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        is_preflight = (
            request.method == "OPTIONS"
            and origin is not None
            and "Access-Control-Request-Method" in request.headers
        )
        if not is_preflight or not policy.covers(request.path):
            return await handler(request)
        assert origin is not None
        if not policy.allows(origin):
            raise Forbidden(f"origin {origin[:200]!r} may not call this server", origin=origin)
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Methods": ALLOW_METHODS,
                "Access-Control-Allow-Headers": ALLOW_HEADERS,
                "Access-Control-Max-Age": MAX_AGE,
            },
        )

    return preflight


def _add_headers(
    policy: CorsPolicy,
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get("Origin")
        if origin is None or not policy.covers(request.path) or not policy.allows(origin):
            return
        headers = response.headers
        # Set, not added: an answer relayed from the main server may carry that hop's own.
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        vary = [v.strip() for v in headers.get("Vary", "").split(",") if v.strip()]
        if "origin" not in {v.lower() for v in vary}:
            headers["Vary"] = ", ".join([*vary, "Origin"])

    return add_headers
