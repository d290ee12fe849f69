"""`POST /executions/purge?older_than=SECONDS`: the retention purge by hand (SPEC §9), for
admins. It answers `{"purged": N, "idempotency_keys": K, "complete": bool}`: N finished
executions last changed more than SECONDS ago went, with K expired idempotency keys;
`complete` false says a bound of the purge stopped it first (ask again for the rest)."""

from __future__ import annotations

from aiohttp import web

from adapters.http.errors import json_response
from core.durations import parse_seconds
from core.errors import InvalidRequest
from engine.retention import RetentionPurge
from ports.auth import Authenticate


class RetentionRoutes:
    def __init__(self, retention: RetentionPurge, auth: Authenticate) -> None:
        self.retention = retention
        self.auth = auth

    def install(self, web_app: web.Application) -> None:
        web_app.router.add_post("/executions/purge", self.purge)

    async def purge(self, request: web.Request) -> web.Response:
        principal = await self.auth.authenticate(request.headers.get("Authorization"))
        values = request.query.getall("older_than", [])
        if len(values) != 1:
            raise InvalidRequest(
                "query parameter 'older_than' (seconds) is required, once",
                parameter="older_than",
            )
        purged = await self.retention.purge(principal, parse_seconds(values[0]))
        return json_response(
            {
                "purged": purged.executions,
                "idempotency_keys": purged.idempotency_keys,
                "complete": purged.complete,
            }
        )
