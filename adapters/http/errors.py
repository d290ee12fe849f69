"""How every HTTP answer of ours is written when something goes wrong: the one table that maps
the core's typed errors to status codes, and the one middleware (shared by the main server and
the standalone process) that turns errors into JSON bodies built by `core.responses.error_body`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from core import errors
from core.responses import error_body

log = logging.getLogger("flux.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STATUS_BY_ERROR: dict[type[errors.FluxError], int] = {
    errors.InvalidName: 400,
    errors.InvalidRequest: 400,
    errors.InvalidWorkflowSource: 400,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.AlreadyExists: 409,
    errors.NameCollision: 409,
    errors.InvalidState: 409,
    errors.PayloadTooLarge: 413,
    errors.InputValidationError: 422,
    errors.ShuttingDown: 503,
    errors.UpstreamUnavailable: 503,
    errors.UpstreamTimeout: 504,
}

# What aiohttp's own refusals (no route, wrong method, body too large) are called in our bodies.
_HTTP_CODES = {
    400: errors.InvalidRequest.code,
    404: errors.NotFound.code,
    405: "method_not_allowed",
    413: errors.PayloadTooLarge.code,
}
INTERNAL_ERROR = "internal_error"

_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)  # made once, not per call


def status_for(error: errors.FluxError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        text=dumps(body), status=status, content_type="application/json", headers=headers
    )


def error_response(error: errors.FluxError) -> web.Response:
    return json_response(error_body(error), status_for(error))


def _refusal(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own refusal, as a JSON body; a 405 keeps the Allow header it must carry."""
    code = _HTTP_CODES.get(exc.status, exc.reason.lower().replace(" ", "_"))
    if exc.status == 404:
        message = f"no route {request.method} {request.path}"
    elif exc.status == 413:
        message = f"the request body is over the limit of {request.client_max_size} bytes"
    else:
        message = exc.reason
    allow = exc.headers.get("Allow")
    return json_response(
        {"error": code, "message": message}, exc.status, {"Allow": allow} if allow else None
    )


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error answer is JSON; nothing unexpected ever reaches the caller as a traceback."""
    try:
        return await handler(request)
    except errors.FluxError as error:
        return error_response(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _refusal(request, exc)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return json_response({"error": INTERNAL_ERROR, "message": "internal server error"}, 500)
