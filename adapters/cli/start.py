"""The long-running processes: `flux start server`, `flux start worker`, `flux service start`.

Each builds its settings once with `load_settings` (flags over environment over flux.toml) and
hands them to the composition root; the heavy imports happen only here, on start.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import click

from adapters.cli.failures import one_line
from adapters.cli.session import load
from adapters.config import ConfigError, StandaloneOptions


@click.group()
def start() -> None:
    """Run the Flux server."""


@start.command("server")
@click.option("--host", help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 8000).")
@click.option("--database-url", metavar="URL", help="sqlite:///path (default .flux/flux.db).")
@click.option(
    "--workers",
    type=click.IntRange(1, 1024),
    help="Worker processes that run workflow code (default: the CPUs, at least 2).",
)
@click.option(
    "--isolation",
    type=click.Choice(["process", "none"]),
    help="process (default): workflow code runs in supervised worker processes; none: in the "
    "server itself, for trusted code only (docs/engine.md).",
)
@click.option(
    "--executor",
    type=click.Choice(["embedded", "workers"]),
    default="embedded",
    show_default=True,
    help="embedded: this server runs its executions (one server per database); workers: only "
    "store them for 'flux start worker' processes (any number of replicas).",
)
def start_server(
    host: str | None,
    port: int | None,
    database_url: str | None,
    workers: int | None,
    isolation: str | None,
    executor: str,
) -> None:
    """Run the main server until SIGINT or SIGTERM."""
    settings = load(
        {
            "host": host,
            "port": port,
            "database_url": database_url,
            "workers": workers,
            "isolation": isolation,
        }
    )
    from adapters.bootstrap import serve  # imported here: the client commands stay light

    # A port in use, a damaged database file, an unreachable PostgreSQL, a database held by
    # another server: one line, exit code 1.
    with one_line(
        address=_address(settings.host, settings.port), database_url=settings.database_url
    ):
        serve(settings, executor)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@start.command("worker")
@click.option("--database-url", metavar="URL", help="The servers' database (postgresql://...).")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Executions run at the same time.",
)
@click.option(
    "--lease-seconds",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="How long a claim lasts without a heartbeat before another worker may take over.",
)
@click.option("--link-fd", type=int, hidden=True, help="Run as a server's local worker.")
def start_worker(
    database_url: str | None, concurrency: int, lease_seconds: float, link_fd: int | None
) -> None:
    """Claim and run executions stored by servers started with '--executor workers', until
    SIGINT or SIGTERM."""
    from adapters.worker_process import run_linked_worker, run_worker

    if link_fd is not None:
        asyncio.run(run_linked_worker(link_fd))
        return

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = load({"database_url": database_url})

    def ready(worker: Any) -> None:
        click.echo(f"flux worker {worker.owner} ready (concurrency {concurrency})")

    with one_line(database_url=settings.database_url):
        asyncio.run(run_worker(settings, concurrency=concurrency, lease=lease_seconds, ready=ready))


# Registered under `flux service` by the root group (main.py).
@click.command("start")
@click.argument("name")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to bind.")
@click.option("--port", default=9000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--server-url", metavar="URL", help="Main Flux server (default: from settings).")
@click.option(
    "--cache-ttl",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds an endpoint list is reused.",
)
@click.option("--mcp/--no-mcp", default=None, help="Override the service's stored MCP setting.")
@click.option("--mcp-issuer", metavar="URL", help="IdP issuer; turns on MCP token checks.")
@click.option("--mcp-audience", help="Expected 'aud' of MCP tokens.")
@click.option("--mcp-jwks-uri", metavar="URL", help="JWKS URL (default: discovered).")
@click.option("--mcp-base-url", metavar="URL", help="Public base URL behind a proxy.")
@click.option(
    "--mcp-forward-token",
    is_flag=True,
    default=False,
    help="Send MCP callers' tokens on to the server (default: FLUX_API_KEY is sent).",
)
@click.option(
    "--upstream-timeout",
    default=300.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds to wait for the main server.",
)
def service_start(
    name: str,
    host: str,
    port: int,
    server_url: str | None,
    cache_ttl: float,
    mcp: bool | None,
    mcp_issuer: str | None,
    mcp_audience: str | None,
    mcp_jwks_uri: str | None,
    mcp_base_url: str | None,
    mcp_forward_token: bool,
    upstream_timeout: float,
) -> None:
    """Serve service NAME on its own (root-level URLs, forwards to the server)."""
    # The process's own credentials (settings.api_key: FLUX_API_KEY or flux.toml) travel
    # inside the settings; the standalone process reads nothing from the environment itself.
    settings = load()
    try:
        options = StandaloneOptions(
            settings=settings,
            service=name,
            host=host,
            port=port,
            server_url=server_url or settings.server_url,
            cache_ttl=cache_ttl,
            mcp=mcp,
            mcp_issuer=mcp_issuer,
            mcp_audience=mcp_audience,
            mcp_jwks_uri=mcp_jwks_uri,
            mcp_base_url=mcp_base_url,
            mcp_forward_token=mcp_forward_token,
            upstream_timeout=upstream_timeout,
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    from adapters.standalone_process import serve_standalone

    with one_line(address=_address(host, port)):
        serve_standalone(options)
