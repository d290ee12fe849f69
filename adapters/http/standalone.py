"""The standalone service process: one service at root-level URLs, forwarding to the main server.

`service_app` lays out the aiohttp application around a gateway that the process's composition
root (adapters/standalone_process.py) builds and runs for `flux service start`.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from adapters.config import StandaloneOptions
from adapters.http.auth import install_bearer_challenge
from adapters.http.errors import errors_as_json, json_response
from adapters.http.gateway import HttpServiceGateway
from core import errors
from core.endpoint_cache import Known, ServiceMissing, clashing_names, served_endpoints
from core.mcp_tools import tools_for
from ports.gateway import ServiceGateway

ExtraSetup = Callable[[web.Application, ServiceGateway], None]

GATEWAY: web.AppKey[HttpServiceGateway] = web.AppKey("gateway", HttpServiceGateway)
# Whether `/mcp` is mounted (by `extra_setup`), for the start report.
MCP_MOUNTED: web.AppKey[bool] = web.AppKey("mcp_mounted", bool)
MCP_PATH = "/mcp"

# Workflow names are Python identifiers; anything else is not an endpoint, and is answered
# without a look at the cache.
_NAME = r"{workflow:[A-Za-z_][A-Za-z0-9_]*}"
_HEALTH_TIMEOUT = 2.0
_WARM_UP_TIMEOUT = 10.0


def log_line(message: str) -> None:
    print(f"flux service: {message}", file=sys.stderr, flush=True)


def service_app(
    options: StandaloneOptions,
    gateway: HttpServiceGateway,
    *,
    session: aiohttp.ClientSession | None = None,
    extra_setup: ExtraSetup | None = None,
) -> web.Application:
    """The standalone process's application over `gateway`.

    `session`: a ClientSession to use (and not close); by default the app opens one pooled
    session at startup and closes it at cleanup. `extra_setup` mounts more routes (the MCP
    front end at `/mcp`) before the catch-all workflow routes, so that its paths win.
    """
    app = web.Application(
        client_max_size=options.settings.max_body_bytes, middlewares=[errors_as_json]
    )
    app[GATEWAY] = gateway
    install_bearer_challenge(app)
    app.cleanup_ctx.append(_client_session(session))
    app.cleanup_ctx.append(_warm_up)

    app.router.add_get("/health", _health)
    if extra_setup is not None:
        extra_setup(app, gateway)
    app[MCP_MOUNTED] = any(resource.canonical == MCP_PATH for resource in app.router.resources())
    if not app[MCP_MOUNTED]:
        # Said plainly, not "no endpoint 'mcp'" from the workflow routes.
        app.router.add_route("*", MCP_PATH, _mcp_off)
    app.router.add_post(f"/{_NAME}", _forward)
    app.router.add_post(f"/{_NAME}/resume/{{execution_id}}", _forward)
    app.router.add_post(f"/{_NAME}/resume/{{execution_id}}/{{mode}}", _forward)
    app.router.add_get(f"/{_NAME}/status/{{execution_id}}", _forward)
    app.router.add_get(f"/{_NAME}/events/{{execution_id}}", _forward)
    app.router.add_post(f"/{_NAME}/cancel/{{execution_id}}", _forward)
    app.router.add_post(f"/{_NAME}/{{mode}}", _forward)
    return app


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
            log_line(f"endpoint list not loaded yet: {exc.message} (retried on the next request)")
        except TimeoutError:
            log_line("endpoint list not loaded yet: the Flux server is slow to answer")
        else:
            if isinstance(data, ServiceMissing):
                log_line(f"service {gateway.service_name!r} does not exist on {gateway.server_url}")
            else:
                endpoints = served_endpoints(data)
                tools = f", {len(tools_for(endpoints))} MCP tools" if app[MCP_MOUNTED] else ""
                log_line(f"service {gateway.service_name!r}: {len(endpoints)} endpoints{tools}")

    task = asyncio.get_running_loop().create_task(fetch())
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def report_clashes(previous: Known | None, current: Known) -> None:
    """Say at start, and whenever they change, which names this process cannot serve."""
    now = clashing_names(current)
    if now and now != clashing_names(previous):
        log_line(
            "workflow names clashing with this process's own routes, reachable on the main "
            f"server only: {', '.join(now)}"
        )


async def _mcp_off(request: web.Request) -> web.Response:
    return json_response(
        {"error": errors.NotFound.code, "message": "MCP is not enabled on this process"}, 404
    )


async def _forward(request: web.Request) -> web.StreamResponse:
    return await request.app[GATEWAY].forward(request)


async def _health(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]

    async def known() -> Known | None:
        try:
            async with asyncio.timeout(_HEALTH_TIMEOUT):
                return await gateway.cache.current(request.headers.get("Authorization"))
        except (errors.FluxError, TimeoutError):
            return gateway.cache.data

    reachable, data = await asyncio.gather(gateway.server_reachable(_HEALTH_TIMEOUT), known())
    found = None if data is None else not isinstance(data, ServiceMissing)
    healthy = reachable and found is not False
    age = gateway.cache.age()
    body = {
        "status": "ok" if healthy else "degraded",
        "service": gateway.service_name,
        "endpoints": 0 if data is None else len(served_endpoints(data)),
        "cache_age": round(age, 3) if age is not None else None,
        "service_found": found,
        "server": {"url": gateway.server_url, "reachable": reachable},
    }
    return json_response(body, 200 if healthy else 503)
