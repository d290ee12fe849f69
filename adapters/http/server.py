"""The main Flux server: workflows, services, service endpoints and executions over HTTP.

Handlers parse, call a use case of `engine.app.FluxApp`, and write what `core.responses`
shaped. Errors are typed `FluxError`s turned into JSON by one middleware, with the status from
`adapters.http.errors`; anything unexpected is logged and answered with a JSON 500, never a
traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from attrs import frozen

from adapters.http import requests as parse
from adapters.http.auth import RequestAuth
from adapters.http.errors import status_for
from core import permissions
from core.convert import service_json, workflow_info_json
from core.errors import FluxError, InvalidRequest, NotFound, PayloadTooLarge
from core.mcp_tools import mcp_info
from core.model import Execution, ExecutionEvent, ExecutionState, WorkflowRef, WorkflowVersion
from core.openapi import service_openapi
from core.responses import detailed_body, error_body, event_payload, shape_execution, sse_message
from core.services import parse_new_service, parse_service_update
from engine.app import FluxApp
from ports.catalog import Registered

log = logging.getLogger("flux.server")

VERSION = "0.1.0"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)  # made once, not per call


def dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=dumps(body), status=status, content_type="application/json")


def error_response(error: FluxError) -> web.Response:
    return json_response(error_body(error), status_for(error))


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except FluxError as error:
        return error_response(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = "not_found" if exc.status == 404 else exc.reason.lower().replace(" ", "_")
        message = "no such route" if exc.status == 404 else exc.reason
        return json_response({"error": code, "message": message}, exc.status)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return json_response({"error": "internal", "message": "internal server error"}, 500)


@frozen
class Limits:
    max_body_bytes: int = 1 << 20
    max_upload_bytes: int = 1 << 20


class Routes:
    """The main server's handlers over one `FluxApp`."""

    def __init__(
        self,
        app: FluxApp,
        auth: RequestAuth,
        limits: Limits,
        storage_ping: Callable[[], Awaitable[bool]],
    ) -> None:
        self.app = app
        self.auth = auth
        self.limits = limits
        self.storage_ping = storage_ping

    def install(self, web_app: web.Application) -> None:
        r = web_app.router
        r.add_get("/health", self.health)
        r.add_post("/workflows", self.register)
        r.add_get("/workflows", self.list_workflows)
        r.add_get("/workflows/{namespace}/{name}", self.show_workflow)
        r.add_delete("/workflows/{namespace}/{name}", self.delete_workflow)
        r.add_post("/workflows/{namespace}/{name}/run", self.run_ref)
        r.add_post("/workflows/{namespace}/{name}/run/{mode}", self.run_ref)
        r.add_post("/workflows/{namespace}/{name}/resume/{execution_id}", self.resume_ref)
        r.add_post("/workflows/{namespace}/{name}/resume/{execution_id}/{mode}", self.resume_ref)
        r.add_get("/workflows/{namespace}/{name}/status/{execution_id}", self.status_ref)
        r.add_post("/services", self.create_service)
        r.add_get("/services", self.list_services)
        r.add_get("/services/{service}", self.show_service)
        r.add_put("/services/{service}", self.update_service)
        r.add_delete("/services/{service}", self.delete_service)
        r.add_get("/services/{service}/openapi.json", self.service_openapi)
        r.add_get("/services/{service}/mcp", self.service_mcp)
        r.add_post("/services/{service}/{workflow}", self.call_endpoint)
        r.add_post("/services/{service}/{workflow}/resume/{execution_id}", self.resume_endpoint)
        r.add_post(
            "/services/{service}/{workflow}/resume/{execution_id}/{mode}", self.resume_endpoint
        )
        r.add_get("/services/{service}/{workflow}/status/{execution_id}", self.status_endpoint)
        r.add_post("/services/{service}/{workflow}/{mode}", self.call_endpoint)

    # -- health --------------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        reachable = await self.storage_ping()
        body = {
            "status": "ok" if reachable else "degraded",
            "version": VERSION,
            "database": "ok" if reachable else "unreachable",
        }
        return json_response(body, 200 if reachable else 503)

    # -- workflows -----------------------------------------------------------------------------

    async def register(self, request: web.Request) -> web.Response:
        await self._admin(request)
        source, filename = await self._uploaded_module(request)
        registered = await self.app.register(source, filename)
        return json_response({"workflows": _registered_json(registered)}, 201)

    async def _uploaded_module(self, request: web.Request) -> tuple[str, str]:
        limit = self.limits.max_upload_bytes
        if request.content_type.startswith("multipart/"):
            if request.content_length is not None and request.content_length > limit + 4096:
                raise PayloadTooLarge(f"upload exceeds the limit of {limit} bytes", limit=limit)
            reader = await request.multipart()
            async for part in reader:
                if part.name == "file":
                    data = await part.read(decode=True)
                    if len(data) > limit:
                        raise PayloadTooLarge(
                            f"upload exceeds the limit of {limit} bytes", limit=limit
                        )
                    return _decode_source(data), part.filename or "workflow.py"
            raise InvalidRequest("multipart upload needs a 'file' field")
        data = await parse.read_body(request, limit)
        return _decode_source(data), request.query.get("filename", "workflow.py")

    async def list_workflows(self, request: web.Request) -> web.Response:
        await self._authenticated(request)
        infos = await self.app.list_workflows(request.query.get("namespace"))
        return json_response({"workflows": [workflow_info_json(info) for info in infos]})

    async def show_workflow(self, request: web.Request) -> web.Response:
        await self._authenticated(request)
        ref = _ref_of(request)
        versions = await self.app.workflow_versions(ref)
        return json_response(
            {
                "ref": str(ref),
                "namespace": ref.namespace,
                "name": ref.name,
                "latest": versions[-1].version,
                "versions": [workflow_info_json(info) for info in versions],
            }
        )

    async def delete_workflow(self, request: web.Request) -> web.Response:
        await self._admin(request)
        deleted = await self.app.delete_workflow(_ref_of(request), parse.version_of(request))
        return json_response({"deleted": deleted})

    async def run_ref(self, request: web.Request) -> web.StreamResponse:
        principal = await self.auth.principal(request)
        ref, prefix = _ref_target(request)
        version = await self.app.pinned(ref, parse.version_of(request))
        return await self._run(request, principal, version, prefix)

    async def resume_ref(self, request: web.Request) -> web.StreamResponse:
        principal = await self.auth.principal(request)
        return await self._resume(request, principal, *_ref_target(request))

    async def status_ref(self, request: web.Request) -> web.Response:
        principal = await self.auth.principal(request)
        return await self._status(request, principal, *_ref_target(request))

    # -- services ------------------------------------------------------------------------------

    async def create_service(self, request: web.Request) -> web.Response:
        await self._admin(request)
        service = parse_new_service(
            await parse.read_json(request, self.limits.max_body_bytes, required=True)
        )
        resolution = await self.app.create_service(service)
        return json_response(service_json(resolution.service, resolution), 201)

    async def list_services(self, request: web.Request) -> web.Response:
        await self._admin(request)
        resolutions = await self.app.list_services()
        return json_response({"services": [service_json(r.service, r) for r in resolutions]})

    async def show_service(self, request: web.Request) -> web.Response:
        await self._authenticated(request)
        resolution = await self.app.resolution(request.match_info["service"])
        return json_response(service_json(resolution.service, resolution))

    async def update_service(self, request: web.Request) -> web.Response:
        await self._admin(request)
        update = parse_service_update(
            await parse.read_json_object(request, self.limits.max_body_bytes)
        )
        resolution = await self.app.update_service(request.match_info["service"], update)
        return json_response(service_json(resolution.service, resolution))

    async def delete_service(self, request: web.Request) -> web.Response:
        await self._admin(request)
        name = request.match_info["service"]
        await self.app.delete_service(name)
        return json_response({"deleted": name})

    async def service_openapi(self, request: web.Request) -> web.Response:
        await self._authenticated(request)
        resolution = await self.app.resolution(request.match_info["service"])
        return json_response(service_openapi(resolution))

    async def service_mcp(self, request: web.Request) -> web.Response:
        await self._authenticated(request)
        name = request.match_info["service"]
        resolution = await self.app.resolution(name)
        if not resolution.service.mcp_enabled:
            raise NotFound(f"MCP is not enabled for service '{name}'", service=name)
        return json_response(mcp_info(resolution, "/mcp"))

    # -- service endpoints ---------------------------------------------------------------------

    async def call_endpoint(self, request: web.Request) -> web.StreamResponse:
        principal = await self.auth.principal(request)
        service, workflow = request.match_info["service"], request.match_info["workflow"]
        version = await self.app.service_version(service, workflow, parse.version_of(request))
        return await self._run(request, principal, version, f"/services/{service}/{workflow}")

    async def resume_endpoint(self, request: web.Request) -> web.StreamResponse:
        principal = await self.auth.principal(request)
        return await self._resume(request, principal, *await self._endpoint_target(request))

    async def status_endpoint(self, request: web.Request) -> web.Response:
        principal = await self.auth.principal(request)
        return await self._status(request, principal, *await self._endpoint_target(request))

    async def _endpoint_target(self, request: web.Request) -> tuple[WorkflowRef, str]:
        """The workflow behind `/services/{service}/{workflow}` and that URL prefix."""
        service, workflow = request.match_info["service"], request.match_info["workflow"]
        endpoint = await self.app.endpoint(service, workflow)
        return endpoint.workflow.ref, f"/services/{service}/{workflow}"

    # -- executions, shared by service endpoints and by-ref routes -----------------------------

    async def _run(
        self,
        request: web.Request,
        principal: permissions.Principal,
        version: WorkflowVersion,
        prefix: str,
    ) -> web.StreamResponse:
        mode = parse.mode_of(request)
        self.auth.require(principal, permissions.run_permission(version.info.ref))
        body = await parse.read_json(request, self.limits.max_body_bytes)
        runtime = self.app.runtime

        def launch(wait: bool) -> Awaitable[Execution]:
            return runtime.run(version, body) if wait else runtime.start(version, body)

        return await self._answer(request, mode, "run", prefix, launch)

    async def _resume(
        self, request: web.Request, principal: permissions.Principal, ref: WorkflowRef, prefix: str
    ) -> web.StreamResponse:
        mode = parse.mode_of(request)
        self.auth.require(principal, permissions.run_permission(ref))
        execution_id = request.match_info["execution_id"]
        await self.app.execution_of(ref, execution_id)
        body = await parse.read_json(request, self.limits.max_body_bytes)
        runtime = self.app.runtime

        def launch(wait: bool) -> Awaitable[Execution]:
            return runtime.resume(execution_id, body, wait=wait)

        return await self._answer(request, mode, "resume", prefix, launch)

    async def _answer(
        self,
        request: web.Request,
        mode: str,
        kind: str,
        prefix: str,
        launch: Callable[[bool], Awaitable[Execution]],
    ) -> web.StreamResponse:
        """Sync waits for the run to settle; async and stream return as soon as it is under way."""
        if mode == "sync":
            detailed = parse.flag(request, "detailed")
            execution = await launch(True)
            shaped = shape_execution(execution, kind=kind, detailed=detailed, url_prefix=prefix)
            return json_response(*_swap(shaped))
        execution = await launch(False)
        if mode == "stream":
            return await self._stream(request, execution, prefix)
        shaped = shape_execution(execution, kind="async", detailed=True, url_prefix=prefix)
        return json_response(*_swap(shaped))

    async def _status(
        self, request: web.Request, principal: permissions.Principal, ref: WorkflowRef, prefix: str
    ) -> web.Response:
        self.auth.require(principal, permissions.run_permission(ref))
        execution = await self.app.execution_of(ref, request.match_info["execution_id"])
        return json_response(
            *_swap(shape_execution(execution, kind="status", detailed=True, url_prefix=prefix))
        )

    async def _stream(
        self, request: web.Request, execution: Execution, prefix: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        async for item in self.app.runtime.watch(execution.execution_id):
            if isinstance(item, ExecutionEvent):
                message = sse_message(str(item.kind), event_payload(item))
            else:
                message = sse_message("state", detailed_body(item, prefix))
            try:
                await response.write(message.encode())
            except (ConnectionResetError, RuntimeError):
                # The caller went away; the execution goes on regardless.
                break
            if isinstance(item, Execution) and ExecutionState(item.state).ends_stream:
                break
        await response.write_eof()
        return response

    # -- auth helpers --------------------------------------------------------------------------

    async def _authenticated(self, request: web.Request) -> permissions.Principal:
        return await self.auth.principal(request)

    async def _admin(self, request: web.Request) -> permissions.Principal:
        principal = await self.auth.principal(request)
        self.auth.require(principal, permissions.ADMIN)
        return principal


def _swap(shaped: tuple[int, Any]) -> tuple[Any, int]:
    status, body = shaped
    return body, status


def _ref_target(request: web.Request) -> tuple[WorkflowRef, str]:
    """The workflow named by `/workflows/{namespace}/{name}` and that URL prefix."""
    ref = _ref_of(request)
    return ref, f"/workflows/{ref.namespace}/{ref.name}"


def _ref_of(request: web.Request) -> WorkflowRef:
    try:
        return WorkflowRef.parse(f"{request.match_info['namespace']}/{request.match_info['name']}")
    except FluxError as exc:
        raise NotFound(exc.message) from None


def _registered_json(registered: list[Registered]) -> list[dict[str, Any]]:
    return [
        {
            "ref": str(item.info.ref),
            "namespace": item.info.ref.namespace,
            "name": item.info.ref.name,
            "version": item.info.version,
            "created": item.created,
        }
        for item in registered
    ]


def _decode_source(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("the uploaded module is not UTF-8 text") from None
