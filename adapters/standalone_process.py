"""The composition root of the standalone service process (`flux service start`): a gateway to
the main server with the process's own credentials, its endpoint cache, CORS and, when wanted,
`/mcp`. Kept apart from adapters/bootstrap.py, which builds the main server: the two processes
share no adapter but the HTTP error handling.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Callable

import aiohttp
from aiohttp import web

from adapters.bootstrap import log_to_stderr
from adapters.config import StandaloneOptions
from adapters.http.cors import every_route, install_cors
from adapters.http.errors import ACCESS_LOG, AccessLogger, run_app
from adapters.http.gateway import HttpServiceGateway
from adapters.http.standalone import log_line, report_clashes, service_app
from core import errors
from core.endpoint_cache import ServiceMissing
from ports.gateway import ServiceGateway

_MCP_SETTING_TIMEOUT = 10.0


def build_standalone_app(
    options: StandaloneOptions,
    *,
    session: aiohttp.ClientSession | None = None,
    clock: Callable[[], float] | None = None,
    mcp: bool = False,
) -> web.Application:
    """The standalone process for `options`: a gateway to the main server with the process's own
    credentials (`settings.api_key`), its endpoint cache, and `/mcp` when `mcp` is on."""
    gateway = _gateway(options, session, clock=clock)
    extra = None
    if mcp:
        from adapters.mcp.standalone import mount_mcp

        def extra(app: web.Application, gateway: ServiceGateway) -> None:
            mount_mcp(app, gateway, options)

    app = service_app(options, gateway, session=session, extra_setup=extra)
    install_cors(app, options.settings.cors.allowed_origins, every_route)
    return app


def _gateway(
    options: StandaloneOptions,
    session: aiohttp.ClientSession | None,
    *,
    clock: Callable[[], float] | None = None,
    upstream_timeout: float | None = None,
) -> HttpServiceGateway:
    extra = {} if clock is None else {"clock": clock}
    return HttpServiceGateway(
        options.service,
        options.server_url,
        session,
        upstream_timeout=upstream_timeout or options.upstream_timeout,
        api_key=options.settings.api_key,
        cache_ttl=options.cache_ttl,
        on_refresh=report_clashes,
        **extra,
    )


def serve_standalone(options: StandaloneOptions) -> None:
    """Run the process until interrupted (what `flux service start` calls)."""
    log_to_stderr()
    url = f"http://{_url_host(options.host)}:{options.port}"

    mcp = False

    def listening(_: str) -> None:
        log_line(
            f"serving service {options.service!r} on {url}, forwarding to {options.server_url} "
            f"(cache TTL {options.cache_ttl:g} s); " + (f"MCP at {url}/mcp" if mcp else "MCP off")
        )

    async def prepare() -> web.Application:
        nonlocal mcp
        mcp = await _mcp_wanted(options)
        if not _is_loopback(options.host) and not options.settings.api_key:
            if not (mcp and options.mcp_issuer):
                print(
                    f"flux service: warning: listening on {options.host}, beyond this machine, "
                    "with no credentials of its own (no api_key, no --mcp-issuer): unless the "
                    "main server requires them, anyone who can reach this port can run the "
                    "service's workflows",
                    file=sys.stderr,
                    flush=True,
                )
        return build_standalone_app(options, mcp=mcp)

    run_app(
        prepare(),
        host=options.host,
        port=options.port,
        on_listening=listening,
        access_log=ACCESS_LOG,
        access_log_class=AccessLogger,
        shutdown_timeout=5.0,
    )


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _mcp_wanted(options: StandaloneOptions) -> bool:
    """`--mcp`/`--no-mcp`, else the service's stored `mcp_enabled`."""
    if options.mcp is not None:
        return options.mcp
    timeout = min(options.upstream_timeout, _MCP_SETTING_TIMEOUT)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        gateway = _gateway(options, session, upstream_timeout=timeout)
        try:
            known = await gateway.fetch()
        except errors.FluxError as exc:
            log_line(f"cannot read the service's MCP setting ({exc.message}); /mcp is off")
            return False
    return not isinstance(known, ServiceMissing) and known.service.mcp_enabled
