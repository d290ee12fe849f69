"""`/mcp` on the standalone service process (called by `adapters.http.standalone`)."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from adapters.auth.resource_metadata import setup_mcp_auth
from adapters.auth.upstream import mcp_gateway
from adapters.mcp.server import mount_mcp as mount_tools
from adapters.version import VERSION
from ports.gateway import ServiceGateway

log = logging.getLogger(__name__)


def mount_mcp(app: web.Application, gateway: ServiceGateway, options: Any) -> None:
    """Mount the service's MCP tools at `/mcp`; with an issuer (`--mcp-issuer`, else the OIDC
    settings) bearer tokens are required and the RFC 9728 metadata routes are served."""
    auth = setup_mcp_auth(app, options)
    mount_tools(
        app,
        mcp_gateway(gateway, options, guarded=auth is not None),
        auth=auth,
        version=VERSION,
    )
    log.info("MCP tools at /mcp (%s)", "bearer tokens required" if auth else "open")
