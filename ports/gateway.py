"""The port between a standalone service process's front ends (root HTTP routes, MCP tools) and
the way it reaches the main server."""

from __future__ import annotations

from typing import Any, Literal, Protocol

from core.model import Endpoint

Action = Literal["run", "async", "resume", "resume_async", "status"]


class ServiceGateway(Protocol):
    service_name: str

    async def endpoints(self, authorization: str | None = None) -> tuple[Endpoint, ...]:
        """The service's callable endpoints (colliding names left out), from the endpoint cache,
        refreshed when older than the TTL."""

    async def call(
        self,
        workflow: str,
        action: Action,
        *,
        body: Any = None,
        execution_id: str | None = None,
        authorization: str | None = None,
    ) -> tuple[int, Any]:
        """Run, resume or query one endpoint on the main server; returns (status, detailed body)
        with `status_url`/`resume_url` rewritten to the standalone process's own routes."""
