"""The HTTP face of workflow calls: `/services/{service}/{workflow}...` and
`/workflows/{namespace}/{name}/...` translated to and from the use cases of engine/calls.py.

A handler reads the path, query and body, hands them to the use case with the caller's
principal, and writes what `core.responses` shapes. It decides nothing itself.
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web

from adapters.http import requests as parse
from adapters.http import streams
from adapters.http.errors import json_response
from core import callbacks
from core.errors import FluxError, InvalidRequest, NotFound
from core.idempotency import KEY_HEADER, REPLAYED_HEADER
from core.model import WorkflowRef
from core.permissions import Principal
from core.responses import shape_execution
from engine.calls import ServiceCalls, Target
from engine.idempotent import Answer, IdempotentCalls
from ports.auth import Authenticate
from ports.idempotency import Claimed

EXECUTION_ID = "Flux-Execution-Id"


class CallRoutes:
    def __init__(
        self,
        calls: ServiceCalls,
        auth: Authenticate,
        max_body_bytes: int,
        mount: str = "",
        idempotent: IdempotentCalls | None = None,
    ) -> None:
        """`mount`: the path the routes are mounted under in an embedding application (its
        answers' `status_url` and `resume_url` must point there). `idempotent`: the use case
        of runs and resumes that carry an `Idempotency-Key` (without it, a key is refused)."""
        self.calls = calls
        self.idempotent = idempotent or IdempotentCalls(calls, _NoKeys())
        self.auth = auth
        self.max_body_bytes = max_body_bytes
        self.mount = mount.rstrip("/")

    def install(self, web_app: web.Application) -> None:
        r = web_app.router
        # A declared body over the limit is refused before `100 Continue` invites its upload.
        expect = parse.expect_handler(self.max_body_bytes)
        for base in ("/workflows/{namespace}/{name}/run", "/services/{service}/{workflow}"):
            r.add_post(base, self.run, expect_handler=expect)
            r.add_post(base + "/{mode}", self.run, expect_handler=expect)
        for base in ("/workflows/{namespace}/{name}", "/services/{service}/{workflow}"):
            r.add_post(base + "/resume/{execution_id}", self.resume, expect_handler=expect)
            r.add_post(base + "/resume/{execution_id}/{mode}", self.resume, expect_handler=expect)
            r.add_get(base + "/status/{execution_id}", self.status)
            r.add_get(base + "/events/{execution_id}", self.events)
            r.add_post(base + "/cancel/{execution_id}", self.cancel)

    async def run(self, request: web.Request) -> web.StreamResponse:
        principal = await self._principal(request)
        target, prefix = target_of(request, self.mount)
        mode, detailed, version = _query(request)
        wait = parse.prefer_wait_of(request) if mode == "sync" else None
        key = parse.idempotency_key_of(request)
        body = await parse.read_json(request, self.max_body_bytes)
        answer = await self.idempotent.call(
            principal,
            target,
            body,
            key,
            version=version,
            wait=mode == "sync",
            wait_at_most=wait,
            callback_url=request.headers.get(callbacks.HEADER),
        )
        return await self._answer(
            request, principal, target, prefix, mode, "run", answer, detailed, wait
        )

    async def resume(self, request: web.Request) -> web.StreamResponse:
        principal = await self._principal(request)
        target, prefix = target_of(request, self.mount)
        mode, detailed, _ = _query(request)
        wait = parse.prefer_wait_of(request) if mode == "sync" else None
        key = parse.idempotency_key_of(request)
        body = await parse.read_json(request, self.max_body_bytes)
        answer = await self.idempotent.resume(
            principal,
            target,
            request.match_info["execution_id"],
            body,
            key,
            wait=mode == "sync",
            wait_at_most=wait,
        )
        return await self._answer(
            request, principal, target, prefix, mode, "resume", answer, detailed, wait
        )

    async def status(self, request: web.Request) -> web.Response:
        principal = await self._principal(request)
        target, prefix = target_of(request, self.mount)
        _query(request)  # an answer is always detailed, but a bad parameter is still refused
        execution = await self.calls.status(principal, target, request.match_info["execution_id"])
        status, body = shape_execution(execution, kind="status", detailed=True, url_prefix=prefix)
        return json_response(body, status)

    async def cancel(self, request: web.Request) -> web.Response:
        principal = await self._principal(request)
        target, prefix = target_of(request, self.mount)
        execution = await self.calls.cancel(principal, target, request.match_info["execution_id"])
        status, body = shape_execution(execution, kind="status", detailed=True, url_prefix=prefix)
        return json_response(body, status, {EXECUTION_ID: execution.execution_id})

    async def _principal(self, request: web.Request) -> Principal:
        return await self.auth.authenticate(request.headers.get("Authorization"))

    async def _answer(
        self,
        request: web.Request,
        principal: Principal,
        target: Target,
        prefix: str,
        mode: str,
        kind: Literal["run", "resume"],
        answer: Answer,
        detailed: bool,
        wait: int | None = None,
    ) -> web.StreamResponse:
        execution = answer.execution
        if mode == "stream":
            return await self._stream(request, principal, target, prefix, answer)
        shape = "async" if mode == "async" else kind
        status, body = shape_execution(execution, kind=shape, detailed=detailed, url_prefix=prefix)
        headers = _call_headers(answer)
        if wait is not None:
            headers["Preference-Applied"] = f"wait={wait}"
        return json_response(body, status, headers)

    async def _stream(
        self,
        request: web.Request,
        principal: Principal,
        target: Target,
        prefix: str,
        answer: Answer,
    ) -> web.StreamResponse:
        items = self.calls.watch(principal, target, answer.execution.execution_id)
        return await streams.write_stream(request, items, prefix, _call_headers(answer))

    async def events(self, request: web.Request) -> web.StreamResponse:
        """An existing execution's events from its log (past `Last-Event-ID`), then live."""
        principal = await self._principal(request)
        target, prefix = target_of(request, self.mount)
        after = streams.last_event_id_of(request)
        execution_id = request.match_info["execution_id"]
        items = await self.calls.events(principal, target, execution_id, after=after)
        return await streams.write_stream(request, items, prefix, {EXECUTION_ID: execution_id})


def _call_headers(answer: Answer) -> dict[str, str]:
    headers = {EXECUTION_ID: answer.execution.execution_id}
    if answer.replayed:
        headers[REPLAYED_HEADER] = "true"
    return headers


class _NoKeys:
    """The keys of routes built without any: a call that carries one is refused."""

    async def claim(self, *args: Any, **kwargs: Any) -> Claimed:
        raise InvalidRequest(f"this server does not take an {KEY_HEADER} header")

    async def release(self, principal: str, key: str, execution_id: str) -> None:
        return None

    async def purge(self, older_than: float) -> int:
        return 0


def _query(request: web.Request) -> tuple[str, bool, int | None]:
    """Mode, `detailed` and `version`, parsed alike on every call route and mode (a route that
    has no use for one still refuses a bad value: the same value means the same everywhere)."""
    mode = parse.mode_of(request)
    return mode, parse.detailed_of(request, mode), parse.version_of(request)


def target_of(request: web.Request, mount: str = "") -> tuple[Target, str]:
    """What the route names, and the URL prefix its answers point back to."""
    match = request.match_info
    if "service" in match:
        service, workflow = match["service"], match["workflow"]
        return Target.endpoint_of(service, workflow), f"{mount}/services/{service}/{workflow}"
    ref = ref_of(request)
    return Target.workflow(ref), f"{mount}/workflows/{ref.namespace}/{ref.name}"


def ref_of(request: web.Request) -> WorkflowRef:
    """The workflow `/workflows/{namespace}/{name}` names; a malformed one is simply not there."""
    try:
        return WorkflowRef.parse(f"{request.match_info['namespace']}/{request.match_info['name']}")
    except FluxError as exc:
        raise NotFound(exc.message) from None
