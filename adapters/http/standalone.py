"""The standalone service process: one service at root-level URLs, forwarding to the main server.

`serve_standalone(options)` is what `flux service start` runs; `build_standalone_app` builds the
aiohttp application (tests call it with their own ClientSession).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from adapters.config import StandaloneOptions
from adapters.http.auth import install_bearer_challenge
from adapters.http.endpoint_cache import EndpointCache
from adapters.http.errors import status_for
from adapters.http.gateway import HttpServiceGateway, error_body
from core import errors
from core.endpoint_cache import ServiceEndpoints
from ports.gateway import ServiceGateway

ExtraSetup = Callable[[web.Application, ServiceGateway], None]

GATEWAY: web.AppKey[HttpServiceGateway] = web.AppKey("gateway", HttpServiceGateway)
OPTIONS: web.AppKey[StandaloneOptions] = web.AppKey("standalone_options", StandaloneOptions)

# Workflow names are Python identifiers; anything else is not an endpoint, and is answered
# without a look at the cache.
_NAME = r"{workflow:[A-Za-z_][A-Za-z0-9_]*}"
_HEALTH_TIMEOUT = 2.0
_WARM_UP_TIMEOUT = 10.0

_HTTP_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: errors.PayloadTooLarge.code,
}


def _log(message: str) -> None:
    print(f"flux service: {message}", file=sys.stderr, flush=True)


def build_standalone_app(
    options: StandaloneOptions,
    *,
    session: aiohttp.ClientSession | None = None,
    extra_setup: ExtraSetup | None = None,
    api_key: str | None = None,
    clock: Callable[[], float] | None = None,
) -> web.Application:
    """The standalone process's application.

    `session`: a ClientSession to use (and not close); by default the app opens one pooled
    session at startup and closes it at cleanup. `api_key`: the process's own credentials for
    endpoint discovery (default: the FLUX_API_KEY environment variable).
    """
    app = web.Application(
        client_max_size=options.settings.max_body_bytes, middlewares=[_json_errors]
    )
    gateway = HttpServiceGateway(
        options.service,
        options.server_url,
        session,
        upstream_timeout=options.upstream_timeout,
        api_key=api_key if api_key is not None else os.environ.get("FLUX_API_KEY"),
    )
    cache_kwargs: dict[str, Any] = {"ttl": options.cache_ttl, "on_refresh": _report_changes}
    if clock is not None:
        cache_kwargs["clock"] = clock
    gateway.cache = EndpointCache(gateway.fetch, **cache_kwargs)
    app[GATEWAY] = gateway
    app[OPTIONS] = options
    install_bearer_challenge(app)
    app.cleanup_ctx.append(_client_session(session))
    app.cleanup_ctx.append(_warm_up)

    app.router.add_get("/health", _health)
    # HOOK(MCP): the MCP front end mounts `/mcp` (and its well-known metadata routes) here,
    # before the catch-all workflow routes so that its paths win. It receives the gateway that
    # the HTTP routes use and may add its own cleanup_ctx entries.
    if extra_setup is not None:
        extra_setup(app, gateway)
    app.router.add_post(f"/{_NAME}", _forward)
    app.router.add_post(f"/{_NAME}/resume/{{execution_id}}", _forward)
    app.router.add_post(f"/{_NAME}/resume/{{execution_id}}/{{mode}}", _forward)
    app.router.add_get(f"/{_NAME}/status/{{execution_id}}", _forward)
    app.router.add_post(f"/{_NAME}/{{mode}}", _forward)
    return app


def serve_standalone(options: StandaloneOptions) -> None:
    """Run the process until interrupted (what `flux service start` calls)."""
    _log(
        f"serving service {options.service!r} on http://{options.host}:{options.port}, "
        f"forwarding to {options.server_url} (cache TTL {options.cache_ttl:g} s)"
    )
    web.run_app(
        _prepare(options),
        host=options.host,
        port=options.port,
        print=None,
        access_log=None,
        shutdown_timeout=5.0,
    )


async def _prepare(options: StandaloneOptions) -> web.Application:
    return build_standalone_app(options, extra_setup=await _mcp_setup(options))


async def _mcp_setup(options: StandaloneOptions) -> ExtraSetup | None:
    """The MCP mount when MCP is on: `--mcp`/`--no-mcp`, else the service's stored setting."""
    wanted = options.mcp
    if wanted is None:
        wanted = await _stored_mcp_enabled(options)
    if not wanted:
        return None
    try:
        from adapters.mcp.standalone import mount_mcp  # owned by the MCP front end
    except ImportError:
        _log("MCP was asked for, but this installation has no MCP front end; /mcp is off")
        return None

    def setup(app: web.Application, gateway: ServiceGateway) -> None:
        mount_mcp(app, gateway, options)

    return setup


async def _stored_mcp_enabled(options: StandaloneOptions) -> bool:
    timeout = aiohttp.ClientTimeout(total=min(options.upstream_timeout, _WARM_UP_TIMEOUT))
    async with aiohttp.ClientSession(timeout=timeout) as session:
        gateway = HttpServiceGateway(
            options.service,
            options.server_url,
            session,
            upstream_timeout=min(options.upstream_timeout, _WARM_UP_TIMEOUT),
            api_key=os.environ.get("FLUX_API_KEY"),
        )
        try:
            data = await gateway.fetch()
        except errors.FluxError as exc:
            _log(f"cannot read the service's MCP setting ({exc.message}); /mcp is off")
            return False
    return data.mcp_enabled


def _client_session(
    given: aiohttp.ClientSession | None,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        gateway = app[GATEWAY]
        if given is not None:
            gateway.session = given
            yield
            return
        # One pooled session for the process; per-request deadlines come from the gateway.
        connector = aiohttp.TCPConnector(limit=200, limit_per_host=200)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None)
        ) as session:
            gateway.session = session
            yield
            gateway.session = None

    return ctx


async def _warm_up(app: web.Application) -> AsyncIterator[None]:
    """Fetch the endpoint list once at start, so clashes are reported before the first call."""
    gateway = app[GATEWAY]

    async def fetch() -> None:
        try:
            async with asyncio.timeout(min(gateway.upstream_timeout, _WARM_UP_TIMEOUT)):
                data = await gateway.cache.refresh()
        except errors.FluxError as exc:
            _log(f"endpoint list not loaded yet: {exc.message} (retried on the next request)")
        except TimeoutError:
            _log("endpoint list not loaded yet: the Flux server is slow to answer")
        else:
            if not data.exists:
                _log(f"service {gateway.service_name!r} does not exist on {gateway.server_url}")

    task = asyncio.get_running_loop().create_task(fetch())
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _report_changes(previous: ServiceEndpoints | None, current: ServiceEndpoints) -> None:
    before = previous.clashing_names if previous is not None else ()
    if current.clashing_names and current.clashing_names != before:
        _log(
            "workflow names clashing with this process's own routes, reachable on the main "
            f"server only: {', '.join(current.clashing_names)}"
        )


async def _forward(request: web.Request) -> web.StreamResponse:
    return await request.app[GATEWAY].forward(request)


async def _health(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]

    async def endpoints() -> ServiceEndpoints | None:
        try:
            async with asyncio.timeout(_HEALTH_TIMEOUT):
                return await gateway.cache.current(request.headers.get("Authorization"))
        except (errors.FluxError, TimeoutError):
            return gateway.cache.data

    reachable, data = await asyncio.gather(gateway.server_reachable(_HEALTH_TIMEOUT), endpoints())
    healthy = reachable and (data is None or data.exists)
    age = gateway.cache.age()
    body = {
        "status": "ok" if healthy else "degraded",
        "service": gateway.service_name,
        "endpoints": len(data.callable_endpoints) if data is not None else 0,
        "cache_age": round(age, 3) if age is not None else None,
        "service_found": data.exists if data is not None else None,
        "server": {"url": gateway.server_url, "reachable": reachable},
    }
    return web.json_response(body, status=200 if healthy else 503)


@web.middleware
async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every answer of this process's own is JSON; none is a 500 or a traceback."""
    try:
        return await handler(request)
    except errors.FluxError as error:
        return web.json_response(error_body(error), status=status_for(error))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.reason
        if exc.status == 413:
            message = f"the request body is over the limit of {request.app[OPTIONS].settings.max_body_bytes} bytes"
        elif exc.status == 404:
            message = f"no route {request.method} {request.path}"
        return web.json_response(
            {"error": code, "message": message}, status=exc.status, headers=_allow(exc)
        )
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as exc:  # noqa: BLE001 - the process must answer JSON whatever happens
        _log(f"{request.method} {request.path} failed: {exc.__class__.__name__}: {exc}")
        return web.json_response(
            {"error": "gateway_error", "message": "the request could not be forwarded"},
            status=502,
        )


def _allow(exc: web.HTTPException) -> dict[str, str]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}
