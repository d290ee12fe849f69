"""The main Flux server's management routes: health, the workflow catalog and services.

Handlers parse, call a use case of `engine.app.FluxApp` with the caller's principal, and write
what the core shapes. Calls to workflows are routed by adapters/http/calls.py. Errors are typed
`FluxError`s turned into JSON by the middleware of adapters/http/errors.py.
"""

from __future__ import annotations

from typing import Any

from aiohttp import BodyPartReader, web
from attrs import frozen

from adapters.http import requests as parse
from adapters.http.calls import CallRoutes, ref_of
from adapters.http.errors import json_response
from adapters.version import VERSION
from core.convert import service_json, workflow_info_json
from core.errors import InvalidRequest, NotFound, PayloadTooLarge
from core.mcp_tools import mcp_info
from core.openapi import service_openapi
from core.permissions import Principal
from core.services import parse_new_service, parse_service_update
from engine.app import FluxApp
from engine.bundles import MAX_BUNDLE_FILES
from engine.calls import ServiceCalls
from engine.idempotent import IdempotentCalls
from ports.auth import Authenticate
from ports.catalog import Registered


@frozen
class Limits:
    max_body_bytes: int = 1 << 20
    max_upload_bytes: int = 1 << 20


class Routes:
    """The main server's handlers over one `FluxApp` and its `ServiceCalls`."""

    def __init__(
        self,
        app: FluxApp,
        calls: ServiceCalls,
        auth: Authenticate,
        limits: Limits,
        mount: str = "",
        idempotent: IdempotentCalls | None = None,
    ) -> None:
        self.app = app
        self.auth = auth
        self.limits = limits
        self.calls = CallRoutes(calls, auth, limits.max_body_bytes, mount, idempotent)

    def install(self, web_app: web.Application) -> None:
        r = web_app.router
        r.add_get("/health", self.health)
        r.add_post("/workflows", self.register)
        r.add_get("/workflows", self.list_workflows)
        r.add_get("/workflows/{namespace}/{name}", self.show_workflow)
        r.add_delete("/workflows/{namespace}/{name}", self.delete_workflow)
        early_413 = parse.expect_handler(self.limits.max_body_bytes)
        r.add_post("/services", self.create_service, expect_handler=early_413)
        r.add_get("/services", self.list_services)
        r.add_get("/services/{service}", self.show_service)
        r.add_put("/services/{service}", self.update_service, expect_handler=early_413)
        r.add_delete("/services/{service}", self.delete_service)
        r.add_get("/services/{service}/openapi.json", self.service_openapi)
        r.add_get("/services/{service}/mcp", self.service_mcp)
        self.calls.install(web_app)

    # -- health --------------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        # "ok", "read-only" (it answers but takes no writes: full, read-only, locked) or
        # "unreachable", from a bounded write probe (Storage.health).
        database = await self.app.storage_health()
        ok = database == "ok"
        body = {"status": "ok" if ok else "degraded", "version": VERSION, "database": database}
        return json_response(body, 200 if ok else 503)

    # -- workflows -----------------------------------------------------------------------------

    async def register(self, request: web.Request) -> web.Response:
        principal = await self._principal(request)
        files = await self._uploaded_module(request)
        registered = await self.app.register(principal, files)
        return json_response({"workflows": _registered_json(registered)}, 201)

    async def _uploaded_module(self, request: web.Request) -> dict[str, str]:
        """File name -> source of what was uploaded: a raw body (one module, named by
        `?filename=`) or a multipart form with one `file` part per file; several are a bundle,
        each part named by its relative path (`pkg/helpers.py`), at most MAX_BUNDLE_FILES and
        `max_upload_bytes` in all."""
        limit = self.limits.max_upload_bytes
        too_large = PayloadTooLarge(f"upload exceeds the limit of {limit} bytes", limit=limit)
        if not request.content_type.startswith("multipart/"):
            data = await parse.read_body(request, limit)
            return {request.query.get("filename", "workflow.py"): _decode_source(data)}
        # Room for the form's own framing: boundaries and part headers, a few hundred bytes each.
        envelope = 4096 + 512 * MAX_BUNDLE_FILES
        if request.content_length is not None and request.content_length > limit + envelope:
            raise too_large
        files: dict[str, str] = {}
        total = 0
        reader = await request.multipart()
        async for part in reader:
            if not (isinstance(part, BodyPartReader) and part.name == "file"):
                continue
            if len(files) == MAX_BUNDLE_FILES:
                raise InvalidRequest(f"an upload holds at most {MAX_BUNDLE_FILES} files")
            data = await part.read(decode=True)
            total += len(data)
            if total > limit:
                raise too_large
            name = part.filename or ("workflow.py" if not files else "")
            if not name:
                raise InvalidRequest("each 'file' part of a bundle needs its file name")
            disposition = part.headers.get("Content-Disposition", "")
            if 'filename="/' in disposition or 'filename="\\' in disposition:
                # aiohttp strips the leading slash; an absolute name is refused, not made relative
                raise InvalidRequest(f"file name '/{name}' is absolute: send relative paths")
            if name in files:
                raise InvalidRequest(f"the upload holds '{name}' twice", filename=name)
            files[name] = _decode_source(bytes(data))
        if not files:
            raise InvalidRequest("multipart upload needs a 'file' field")
        return files

    async def list_workflows(self, request: web.Request) -> web.Response:
        await self._principal(request)
        infos = await self.app.list_workflows(parse.namespace_of(request))
        return json_response({"workflows": [workflow_info_json(info) for info in infos]})

    async def show_workflow(self, request: web.Request) -> web.Response:
        await self._principal(request)
        ref = ref_of(request)
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
        # 409 `workflow_in_use` with `count` while executions of it are unfinished, unless
        # ?force=true, which cancels them first (SPEC §9).
        principal = await self._principal(request)
        deleted = await self.app.delete_workflow(
            principal, ref_of(request), parse.version_of(request), parse.flag(request, "force")
        )
        return json_response({"deleted": deleted})

    # -- services ------------------------------------------------------------------------------

    async def create_service(self, request: web.Request) -> web.Response:
        principal = await self._principal(request)
        body = await parse.read_json(request, self.limits.max_body_bytes, required=True)
        resolution = await self.app.create_service(principal, parse_new_service(body))
        return json_response(service_json(resolution.service, resolution), 201)

    async def list_services(self, request: web.Request) -> web.Response:
        principal = await self._principal(request)
        resolutions = await self.app.list_services(principal)
        return json_response({"services": [service_json(r.service, r) for r in resolutions]})

    async def show_service(self, request: web.Request) -> web.Response:
        await self._principal(request)
        resolution = await self.app.service(request.match_info["service"])
        return json_response(service_json(resolution.service, resolution))

    async def update_service(self, request: web.Request) -> web.Response:
        principal = await self._principal(request)
        body = await parse.read_json_object(request, self.limits.max_body_bytes)
        resolution = await self.app.update_service(
            principal, request.match_info["service"], parse_service_update(body)
        )
        return json_response(service_json(resolution.service, resolution))

    async def delete_service(self, request: web.Request) -> web.Response:
        principal = await self._principal(request)
        name = request.match_info["service"]
        await self.app.delete_service(principal, name)
        return json_response({"deleted": name})

    async def service_openapi(self, request: web.Request) -> web.Response:
        await self._principal(request)
        resolution = await self.app.service(request.match_info["service"])
        return json_response(service_openapi(resolution))

    async def service_mcp(self, request: web.Request) -> web.Response:
        await self._principal(request)
        name = request.match_info["service"]
        resolution = await self.app.service(name)
        if not resolution.service.mcp_enabled:
            raise NotFound(f"MCP is not enabled for service '{name}'", service=name)
        return json_response(mcp_info(resolution, "/mcp"))

    async def _principal(self, request: web.Request) -> Principal:
        return await self.auth.authenticate(request.headers.get("Authorization"))


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
