"""How the standalone process reaches the main server: endpoint discovery and request forwarding.

`HttpServiceGateway` implements `ports.gateway.ServiceGateway` for the MCP tools (`call`) and
offers `forward` to the root HTTP routes, which streams the main server's answer back as it
comes. Either way `status_url`/`resume_url` point at the process's own root routes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from yarl import URL

from adapters.http import relay
from adapters.http.endpoint_cache import EndpointCache
from adapters.http.errors import status_for
from core import errors
from core.convert import resolution_from_json
from core.endpoint_cache import Known, ServiceMissing, served_endpoints
from core.model import Endpoint
from core.responses import error_body
from ports.gateway import Action

_ACTION_PATHS: Mapping[str, tuple[str, str]] = {
    "run": ("POST", ""),
    "async": ("POST", "/async"),
    "resume": ("POST", "/resume/{id}"),
    "resume_async": ("POST", "/resume/{id}/async"),
    "status": ("GET", "/status/{id}"),
}


class HttpServiceGateway:
    def __init__(
        self,
        service_name: str,
        server_url: str,
        session: aiohttp.ClientSession | None,
        upstream_timeout: float = 30.0,
        *,
        api_key: str | None = None,
        cache_ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        on_refresh: Callable[[Known | None, Known], None] | None = None,
    ) -> None:
        """`session` may be None until the owning application starts; the process shares one
        pooled session. The endpoint cache is built over this gateway's own fetch."""
        self.service_name = service_name
        self.server_url = server_url.rstrip("/")
        self.session = session
        self.upstream_timeout = upstream_timeout
        self.api_key = api_key
        self.cache = EndpointCache(self.fetch, ttl=cache_ttl, clock=clock, on_refresh=on_refresh)
        self._clock = clock
        # Whether the main server refuses callers without credentials, and when that was seen.
        self._anonymous: tuple[bool, float] | None = None
        self._probe: asyncio.Task[bool] | None = None

    # -- discovery -------------------------------------------------------------------------

    @property
    def own_authorization(self) -> str | None:
        if not self.api_key:
            return None
        key = self.api_key
        return key if " " in key else f"Bearer {key}"

    async def fetch(self, authorization: str | None = None) -> Known:
        """`GET /services/{name}` on the main server, with the caller's credentials first and
        the process's own when the caller brought none or too few."""
        first = authorization or self.own_authorization
        try:
            return await self._fetch_once(first)
        except (errors.Unauthenticated, errors.Forbidden):
            fallback = self.own_authorization
            if fallback is None or fallback == first:
                raise
            return await self._fetch_once(fallback)

    async def _fetch_once(self, authorization: str | None) -> Known:
        url = f"{self.server_url}/services/{quote(self.service_name, safe='')}"
        headers = {"Accept": "application/json"}
        if authorization:
            headers["Authorization"] = authorization
        try:
            async with asyncio.timeout(self.upstream_timeout):
                async with self._session().get(url, headers=headers) as resp:
                    payload = await _json_or_none(resp)
                    status = resp.status
        except TimeoutError as exc:
            raise relay.upstream_timeout() from exc
        except aiohttp.ClientError as exc:
            raise relay.upstream_unavailable(exc, self.server_url) from exc
        if status == 200 and isinstance(payload, dict):
            try:
                return resolution_from_json(payload)
            except (KeyError, TypeError, ValueError, errors.FluxError) as exc:
                raise errors.UpstreamUnavailable(
                    f"the Flux server sent an unreadable service description: {exc}"
                ) from exc
        if status == 404:
            return ServiceMissing(self.service_name)
        message = _message(payload, f"the Flux server answered {status}")
        if status == 401:
            raise errors.Unauthenticated(message)
        if status == 403:
            raise errors.Forbidden(message)
        raise errors.UpstreamUnavailable(
            f"the Flux server could not describe service {self.service_name!r}: {message}",
            upstream_status=status,
        )

    async def endpoints(self, authorization: str | None = None) -> tuple[Endpoint, ...]:
        return served_endpoints(await self.cache.current(authorization))

    async def resolve(self, name: str, authorization: str | None = None) -> Endpoint:
        """The endpoint behind `name`; raises the typed error its absence or collision means.

        The cache may hold what the process's own credentials read; a caller who brought none
        learns nothing from it when the main server would refuse them: 401 comes before 404."""
        if not authorization and self.own_authorization and await self._refuses_anonymous():
            raise errors.Unauthenticated(
                "the Flux server requires credentials: send an Authorization header"
            )
        return await self.cache.lookup(name, authorization)

    async def _refuses_anonymous(self) -> bool:
        """Whether the main server answers a request without credentials 401; asked once per
        cache TTL (one request shared by every caller waiting on it), not per call."""
        known = self._anonymous
        if known is not None and self._clock() - known[1] < self.cache.policy.ttl:
            return known[0]
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._probe_anonymous())
            self._probe.add_done_callback(_consume)
        return await asyncio.shield(self._probe)

    async def _probe_anonymous(self) -> bool:
        try:
            await self._fetch_once(None)
        except (errors.Unauthenticated, errors.Forbidden):
            refused = True
        else:  # an answer without credentials (the service, or its absence)
            refused = False
        self._anonymous = (refused, self._clock())
        return refused

    async def server_reachable(self, timeout: float = 2.0) -> bool:
        try:
            async with asyncio.timeout(min(timeout, self.upstream_timeout)):
                async with self._session().get(f"{self.server_url}/health") as resp:
                    await resp.read()
                    # any HTTP answer counts: a degraded server still answers
                    return True
        except (TimeoutError, aiohttp.ClientError):
            return False

    # -- calls for the MCP tools ---------------------------------------------------------

    async def call(
        self,
        workflow: str,
        action: Action,
        *,
        body: Any = None,
        execution_id: str | None = None,
        authorization: str | None = None,
    ) -> tuple[int, Any]:
        """Errors come back as (status, error body) too, never raised."""
        try:
            await self.resolve(workflow, authorization)
            method, tail = _ACTION_PATHS[action]
            if "{id}" in tail:
                if not execution_id:
                    raise errors.InvalidRequest(f"{action} needs an execution id")
                tail = tail.replace("{id}", quote(execution_id, safe=""))
            headers = {"Accept": "application/json"}
            if authorization:
                headers["Authorization"] = authorization
            data = None
            if method == "POST":
                headers["Content-Type"] = "application/json"
                data = json.dumps(body).encode()
            url = self._endpoint_url(workflow, tail)
            try:
                async with asyncio.timeout(self.upstream_timeout):
                    async with self._session().request(
                        method, url, params={"detailed": "true"}, data=data, headers=headers
                    ) as resp:
                        payload = await _json_or_none(resp)
                        status = resp.status
            except TimeoutError as exc:
                raise relay.upstream_timeout() from exc
            except aiohttp.ClientError as exc:
                raise relay.upstream_unavailable(exc, self.server_url) from exc
        except errors.FluxError as error:
            return status_for(error), error_body(error)
        return status, relay.rewrite_urls(payload, workflow)

    # -- forwarding for the root HTTP routes ---------------------------------------------

    async def forward(self, request: web.Request) -> web.StreamResponse:
        """Pass one root-level request to `/services/{service}/{workflow}...` and stream the
        answer back. Raises `core.errors.FluxError` when it cannot reach an answer."""
        workflow = request.match_info["workflow"]
        authorization = request.headers.get("Authorization")
        await self.resolve(workflow, authorization)
        url = self._endpoint_url(workflow, _route_tail(request))
        if request.rel_url.raw_query_string:
            url += "?" + request.rel_url.raw_query_string
        body = await request.read() if request.can_read_body else None
        headers = relay.forward_request_headers(request)
        # One deadline for the answer's headers and, unless it streams, its whole body.
        deadline = asyncio.get_running_loop().time() + self.upstream_timeout
        try:
            async with asyncio.timeout_at(deadline):
                upstream = await self._session().request(
                    request.method,
                    URL(url, encoded=True),
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                )
        except TimeoutError as exc:
            raise relay.upstream_timeout() from exc
        except aiohttp.ClientError as exc:
            raise relay.upstream_unavailable(exc, self.server_url) from exc
        try:
            content_type = upstream.headers.get("Content-Type", "")
            if content_type.startswith("text/event-stream"):
                return await relay.relay_stream(request, upstream, workflow)
            return await relay.relay_whole(upstream, workflow, deadline)
        finally:
            upstream.release()

    def _endpoint_url(self, workflow: str, tail: str) -> str:
        service = quote(self.service_name, safe="")
        return f"{self.server_url}/services/{service}/{quote(workflow, safe='')}{tail}"

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None:
            raise errors.UpstreamUnavailable("the standalone process has not started yet")
        return self.session


def _consume(task: asyncio.Task[bool]) -> None:
    # a failed probe that nobody awaits any more must not log "exception never retrieved"
    if not task.cancelled():
        task.exception()


def _route_tail(request: web.Request) -> str:
    """What follows `/{workflow}` in the matched route, rebuilt from the decoded path values,
    each encoded once: `/%65cho/%61sync` goes on as `/echo/async`, whatever the caller
    percent-encoded (an encoded slash stays inside its segment)."""
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else "/{workflow}"
    template = canonical.removeprefix("/{workflow}")
    if "{" not in template:
        return template
    values = {key: quote(value, safe="") for key, value in request.match_info.items()}
    return template.format_map(values)


async def _json_or_none(resp: aiohttp.ClientResponse) -> Any:
    raw = await resp.read()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _message(payload: Any, default: str) -> str:
    if isinstance(payload, dict) and isinstance(payload.get("message"), str):
        return payload["message"]
    return default
