"""How every HTTP answer of ours is written when something goes wrong: the one table that maps
the core's typed errors to status codes, and the one middleware (shared by the main server and
the standalone process) that turns errors into JSON bodies built by `core.responses.error_body`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
)
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

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
    errors.UnsupportedMediaType: 415,
    errors.InputValidationError: 422,
    errors.IdempotencyKeyReused: 422,
    errors.ShuttingDown: 503,
    errors.StorageUnavailable: 503,
    errors.StorageInUse: 503,
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

# Made once, not per call. No NaN ever goes out: inputs and outputs are checked before, and a
# value that slipped through is an error rather than invalid JSON (RFC 8259).
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str, allow_nan=False)


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
    """aiohttp's own refusal, as a JSON body; a 405 names the allowed methods (RFC 9110 `Allow`),
    and an OPTIONS on a known path is answered with them rather than refused."""
    code = _HTTP_CODES.get(exc.status, exc.reason.lower().replace(" ", "_"))
    allow = _allowed(exc)
    if exc.status == 405 and allow is not None:
        if request.method == "OPTIONS":
            return web.Response(status=204, headers={"Allow": allow})
        message = f"{request.method} is not allowed on {request.path}; allowed: {allow}"
    elif exc.status == 404:
        message = f"no route {request.method} {request.path}"
    elif exc.status == 413:
        message = f"the request body is over the limit of {request.client_max_size} bytes"
    else:
        message = exc.reason
    return json_response(
        {"error": code, "message": message}, exc.status, {"Allow": allow} if allow else None
    )


def _allowed(exc: web.HTTPException) -> str | None:
    """The methods a 405 allows, OPTIONS included (we answer it on every known path)."""
    if not isinstance(exc, web.HTTPMethodNotAllowed):
        return None
    methods = sorted(exc.allowed_methods | {"OPTIONS"})
    return ", ".join(methods)


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


# -- errors before any middleware: aiohttp's HTTP parser and its last-resort handler -----------

# What the parser's refusals are called; the caller's input is never echoed back.
_PROTOCOL_MESSAGES = {
    LineTooLong: "the request line or a header is too long",
    BadHttpMethod: "the request method is not one this server knows",
    BadStatusLine: "the request line is not valid HTTP",
    InvalidHeader: "a request header is not valid HTTP",
    InvalidURLError: "the request target is not a valid URL",
}


def protocol_error_body(status: int, exc: BaseException | None) -> dict[str, str]:
    """The JSON error for a request refused before routing (status 400 from the parser, 500 or
    504 from the last-resort handler); it names the kind of fault, never the input."""
    if status >= 500:
        code = "gateway_timeout" if status == 504 else INTERNAL_ERROR
        message = "the request timed out" if status == 504 else "internal server error"
        return {"error": code, "message": message}
    message = "the request is not valid HTTP"
    for cls in type(exc).__mro__ if exc is not None else ():
        if cls in _PROTOCOL_MESSAGES:
            message = _PROTOCOL_MESSAGES[cls]
            break
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Bad Request"
    return {"error": _HTTP_CODES.get(status, reason.lower().replace(" ", "_")), "message": message}


class ProtocolErrorResponse(web.Response):
    """An answer made before any route was matched (the access log knows it by its type)."""


class JsonErrorsRequestHandler(RequestHandler):
    """aiohttp's connection handler, with its own error answers (a request line over 8 KiB, an
    oversized header, an unknown method, an exception past every middleware) as our JSON
    errors instead of plain text that echoes the input."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
        else:  # a client's garbage: not ours to report above debug
            self.log_debug("Bad request from %s: %r", request.remote, exc)
        if request.writer.output_size > 0:
            raise ConnectionError("the answer has begun already; cannot send an error instead")
        response = ProtocolErrorResponse(
            text=dumps(protocol_error_body(status, exc)),
            status=status,
            content_type="application/json",
        )
        response.force_close()
        return response


class _JsonErrorsServer(web.Server):
    def __call__(self) -> RequestHandler:
        return JsonErrorsRequestHandler(self, loop=self._loop, **self._kwargs)


class JsonErrorsRunner(web.AppRunner):
    """An AppRunner whose connections answer aiohttp's own errors in JSON. aiohttp builds its
    connection handler class by name in `web.Server.__call__`, so the server that
    `AppRunner._make_server` made is switched to our subclass (same state, one method more)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorsServer
        return server


def run_app(
    app: web.Application | Awaitable[web.Application],
    *,
    host: str,
    port: int,
    on_listening: Callable[[str], None] | None = None,
    shutdown_timeout: float = 60.0,
    **runner_args: Any,
) -> None:
    """`aiohttp.web.run_app` for our processes: the same lifecycle (SIGINT/SIGTERM stop it
    gracefully, `shutdown_timeout` for requests in flight, every app hook run), through
    `JsonErrorsRunner`. `on_listening` gets the URL once the socket listens."""

    async def main() -> None:
        # Bound first: on a port in use the process fails at once, before the application
        # opens its database or starts its workers.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            sock = socket.create_server((host, port), family=family)
        except OSError:
            if inspect.iscoroutine(app):
                app.close()  # never started: nothing of it was opened
            raise
        # A signal only sets the event: the cleanup below then stops the listener and gives the
        # requests in flight their time, while they still run (a signal raising out of the loop
        # would have every task, those requests included, cancelled at once).
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        runner = JsonErrorsRunner(
            await app if not isinstance(app, web.Application) else app,
            handle_signals=False,
            shutdown_timeout=shutdown_timeout,
            **runner_args,
        )
        await runner.setup()
        try:
            await web.SockSite(runner, sock).start()
            if on_listening is not None:
                on_listening(f"http://{host}:{port}")
            await stop.wait()
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


# -- the access log: one line per request --------------------------------------------------------

ACCESS_LOG = logging.getLogger("flux.access")

_EXECUTION_KEY = b'"execution_id"'
# A detailed body starts with its execution id; a raw output is not searched past its head.
_EXECUTION_ID_WITHIN = 160


class AccessLogger(AbstractAccessLogger):
    """`METHOD /raw/path STATUS 1.2ms [execution id]` on `flux.access` at INFO, written by
    aiohttp after each answer. The path is the encoded one (no query string): nothing the
    caller sends can start a new log line. Cheap on purpose: one record, and the execution id
    taken from the route or the first bytes of a JSON body, not a parse."""

    __slots__ = ()

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        if isinstance(response, ProtocolErrorResponse):  # no request line worth repeating
            method, path, execution = "-", "-", None
        else:
            method, path = request.method, request.rel_url.raw_path
            execution = execution_id_of(request, response)
        if execution is None:
            self.logger.info("%s %s %d %.1fms", method, path, response.status, time * 1000)
        else:
            self.logger.info(
                "%s %s %d %.1fms %s", method, path, response.status, time * 1000, execution
            )


def execution_id_of(request: BaseRequest, response: web.StreamResponse) -> str | None:
    match_info = getattr(request, "match_info", None)
    if match_info is not None and "execution_id" in match_info:
        return str(match_info["execution_id"])
    body = response.body if isinstance(response, web.Response) else None
    if not isinstance(body, bytes):
        return None
    at = body.find(_EXECUTION_KEY, 0, _EXECUTION_ID_WITHIN)
    if at < 0:
        return None
    start = body.find(b'"', at + len(_EXECUTION_KEY), at + len(_EXECUTION_KEY) + 4) + 1
    end = body.find(b'"', start, start + 80) if start > 0 else -1
    value = body[start:end] if end > start else b""
    return value.decode("ascii") if value and _ID_CHARS.issuperset(value) else None


_ID_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")
