"""Which credentials the MCP tools of a standalone process send to the main server.

A token validated at `/mcp` was issued for the MCP resource (its audience), not for the main
server. Passing it on would make the process a confused deputy, which the MCP authorization
spec forbids ("token passthrough"). So by default the tools reach the main server with the
process's own credentials (the `api_key` setting), and the caller's token stays at the process. An
operator whose identity provider issues tokens good for both (one audience list, the same
permissions) can turn forwarding on with `--mcp-forward-token`.
"""

from __future__ import annotations

from typing import Any

from core.model import Endpoint
from ports.gateway import Action, ServiceGateway


class OwnCredentials:
    """A `ServiceGateway` that replaces the caller's `Authorization` with the process's own."""

    def __init__(self, gateway: ServiceGateway, authorization: str | None) -> None:
        self.inner = gateway
        self.authorization = authorization
        self.service_name = gateway.service_name

    async def endpoints(self, authorization: str | None = None) -> tuple[Endpoint, ...]:
        return await self.inner.endpoints(self.authorization)

    async def call(
        self,
        workflow: str,
        action: Action,
        *,
        body: Any = None,
        execution_id: str | None = None,
        authorization: str | None = None,
    ) -> tuple[int, Any]:
        return await self.inner.call(
            workflow,
            action,
            body=body,
            execution_id=execution_id,
            authorization=self.authorization,
        )


def mcp_gateway(gateway: ServiceGateway, options: Any, guarded: bool) -> ServiceGateway:
    """The gateway the MCP tools should use. `guarded`: `/mcp` validates tokens itself. An open
    `/mcp` passes the caller's header on as the HTTP routes do: it is meant for the main server."""
    if not guarded or getattr(options, "mcp_forward_token", False):
        return gateway
    return OwnCredentials(gateway, getattr(gateway, "own_authorization", None))
