"""`GET /executions` and `GET /executions/{id}` (SPEC §9): find executions whatever route
started them. Handlers parse the query, call the use cases of engine/executions.py with the
caller's principal, and write what `core.listing` shapes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from adapters.http.errors import json_response
from core.callbacks import Delivery
from core.errors import InvalidRequest
from core.listing import page_body, parse_listing, shown_body
from engine.executions import ExecutionBrowser
from ports.auth import Authenticate


class ExecutionRoutes:
    def __init__(
        self,
        browser: ExecutionBrowser,
        auth: Authenticate,
        mount: str = "",
        deliveries: Callable[[str], Awaitable[Sequence[Delivery]]] | None = None,
    ) -> None:
        """`mount`: the path the main server is mounted under (items' `status_url` point there).
        `deliveries`: an execution's completion callbacks, shown with it as `callbacks`."""
        self.deliveries = deliveries
        self.browser = browser
        self.auth = auth
        self.mount = mount.rstrip("/")

    def install(self, web_app: web.Application) -> None:
        web_app.router.add_get("/executions", self.list)
        web_app.router.add_get("/executions/{execution_id}", self.show)

    async def list(self, request: web.Request) -> web.Response:
        principal = await self.auth.authenticate(request.headers.get("Authorization"))
        query = {name: request.query.getall(name) for name in request.query}
        page = await self.browser.list(principal, parse_listing(query))
        return json_response(page_body(page, self.mount))

    async def show(self, request: web.Request) -> web.Response:
        principal = await self.auth.authenticate(request.headers.get("Authorization"))
        if request.query:
            name = next(iter(request.query))
            raise InvalidRequest(f"unknown query parameter {name!r}", parameter=name)
        execution, events = await self.browser.show(principal, request.match_info["execution_id"])
        body = shown_body(execution, events, self.mount)
        if self.deliveries is not None:  # only once `show` found it and the caller may see it
            body["callbacks"] = [d.as_json() for d in await self.deliveries(execution.execution_id)]
        return json_response(body)
