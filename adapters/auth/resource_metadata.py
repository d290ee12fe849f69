"""OAuth 2.0 Protected Resource Metadata (RFC 9728) and bearer checks for a standalone `/mcp`.

An MCP client that gets a 401 from `/mcp` follows the `resource_metadata` URL of the
`WWW-Authenticate` header (or tries the well-known URLs) to learn which authorization server
issues tokens for this resource; it then returns with `Authorization: Bearer <token>`, which
`McpAuth` validates against the issuer's JWKS.

Plug points for the standalone process (see `setup_mcp_auth`):

    mcp_auth = setup_mcp_auth(app, options)        # None: no issuer configured, /mcp is open
    ...inside the /mcp handler:
    outcome = await mcp_auth(request)              # AccessToken, or the 401 web.Response
    if isinstance(outcome, web.StreamResponse):
        return outcome
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from attrs import evolve, field, frozen
from authlib.oauth2.base import invalid_error_characters
from authlib.oauth2.rfc6750 import InvalidTokenError
from mcp.server.auth.provider import AccessToken

from adapters.auth.oidc import JwtVerifier, access_token
from core.errors import Unauthenticated

WELL_KNOWN = "/.well-known/oauth-protected-resource"


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    # A named converter: mypy's attrs plugin cannot type `converter=tuple`.
    return tuple(values)


@frozen
class ProtectedResource:
    """What `/mcp` advertises and accepts. `base_url` None: built from each request."""

    issuer: str
    audience: str | None = None
    jwks_uri: str | None = None
    base_url: str | None = None
    resource_name: str | None = None
    scopes_supported: tuple[str, ...] = field(default=(), converter=_strings)
    mcp_path: str = "/mcp"

    def base_for(self, request: web.Request) -> str:
        # Behind TLS termination or a proxy the request's own scheme/host are wrong: that is
        # what --mcp-base-url is for.
        if self.base_url:
            return self.base_url.rstrip("/")
        return f"{request.scheme}://{request.host}"

    def resource_url(self, request: web.Request) -> str:
        return self.base_for(request) + self.mcp_path

    def metadata_url(self, request: web.Request) -> str:
        """RFC 9728 §3.1: the well-known segment goes between the host and the resource path."""
        parts = urlsplit(self.resource_url(request))
        return f"{parts.scheme}://{parts.netloc}{WELL_KNOWN}{parts.path.rstrip('/')}"

    def metadata(self, request: web.Request) -> dict[str, Any]:
        document: dict[str, Any] = {
            "resource": self.resource_url(request),
            "authorization_servers": [self.issuer],
            "bearer_methods_supported": ["header"],
        }
        if self.resource_name:
            document["resource_name"] = self.resource_name
        if self.scopes_supported:
            document["scopes_supported"] = list(self.scopes_supported)
        return document


def protected_resource(options: Any) -> ProtectedResource | None:
    """From `adapters.config.StandaloneOptions`: the `--mcp-*` flags, else the server's OIDC
    settings (via `options.mcp_auth()`); None when neither names an issuer (MCP stays open)."""
    auth = options.mcp_auth()
    if auth is None:
        return None
    return ProtectedResource(
        issuer=auth.issuer,
        audience=auth.audience,
        jwks_uri=auth.jwks_uri,
        base_url=getattr(options, "mcp_base_url", None),
        resource_name=f"Flux service {options.service}",
    )


def install_resource_metadata(app: web.Application, resource: ProtectedResource) -> None:
    """Serve the metadata at the path-suffixed well-known URL and at the root one."""

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(
            resource.metadata(request), headers={"Cache-Control": "public, max-age=300"}
        )

    paths = {WELL_KNOWN, WELL_KNOWN + resource.mcp_path}
    if resource.base_url:
        # A base URL with a path prefix (behind a proxy) yields a longer suffixed URL.
        prefix = urlsplit(resource.base_url).path.rstrip("/")
        paths.add(WELL_KNOWN + prefix + resource.mcp_path)
    for path in sorted(paths):
        app.router.add_get(path, handler)


def _describable(text: str) -> str:
    """RFC 6749 §4.1.2.1 allows a narrow ASCII set in `error_description` (authlib refuses
    anything else): quotes and backslashes become apostrophes and slashes, the rest '?'."""
    text = text.replace('"', "'").replace("\\", "/")
    for char in invalid_error_characters(text):
        text = text.replace(char, "?")
    return text


def _challenge(resource_metadata: str, error: InvalidTokenError | None = None) -> str:
    """The `WWW-Authenticate` value: authlib's RFC 6750 challenge, then `resource_metadata`
    (RFC 9728 §5.1) in the order the mcp SDK's own middleware sends them."""
    metadata = 'resource_metadata="' + resource_metadata.replace('"', "%22") + '"'
    if error is None:
        return "Bearer " + metadata
    bearer = dict(error.get_headers())["WWW-Authenticate"]
    return f"{bearer}, {metadata}"


def unauthorized(
    request: web.Request,
    resource: ProtectedResource,
    error: str | None = None,
    description: str | None = None,
) -> web.Response:
    """The 401 for `/mcp`. Without credentials only `resource_metadata` is sent (RFC 6750 §3.1:
    no error code when none was presented); a refused token adds `error="invalid_token"`."""
    refusal: InvalidTokenError | None = None
    if error:
        refusal = InvalidTokenError(_describable(description) if description else None)
        refusal.error = error  # `invalid_request` (RFC 6750 §3.1) shares the challenge shape
    body = {
        "error": error or "unauthenticated",
        "message": description or "a bearer token is required",
    }
    return web.Response(
        status=401,
        text=json.dumps(body),
        content_type="application/json",
        headers={
            "WWW-Authenticate": _challenge(resource.metadata_url(request), refusal),
            "Cache-Control": "no-store",
        },
    )


class McpAuth:
    """The `auth` hook for the standalone `/mcp` route: the caller's `AccessToken`, or the 401
    response to send back."""

    def __init__(self, resource: ProtectedResource, verifier: JwtVerifier) -> None:
        self.resource = resource
        self.verifier = verifier

    async def __call__(self, request: web.Request) -> AccessToken | web.Response:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if not header.strip():
            return unauthorized(request, self.resource)
        if scheme.lower() != "bearer" or not token:
            return unauthorized(
                request, self.resource, "invalid_request", "use 'Authorization: Bearer <token>'"
            )
        try:
            claims = await self.verifier.verify(token)
        except Unauthenticated as refused:
            return unauthorized(request, self.resource, "invalid_token", refused.message)
        return access_token(token, claims)

    async def aclose(self) -> None:
        await self.verifier.aclose()


def setup_mcp_auth(
    app: web.Application,
    options: Any = None,
    *,
    resource: ProtectedResource | None = None,
    verifier: JwtVerifier | None = None,
    scopes_supported: Iterable[str] = (),
) -> McpAuth | None:
    """Install the metadata routes and return the hook, or None when no issuer is configured.

    Give `options` (a `StandaloneOptions`) or an explicit `resource`; the verifier is built from
    the resource unless given, and is closed with the app.
    """
    if resource is None and options is not None:
        resource = protected_resource(options)
    if resource is None:
        return None
    if scopes_supported:
        resource = evolve(resource, scopes_supported=tuple(scopes_supported))
    install_resource_metadata(app, resource)
    guard = McpAuth(
        resource, verifier or JwtVerifier(resource.issuer, resource.audience, resource.jwks_uri)
    )

    async def close(_: web.Application) -> None:
        await guard.aclose()

    app.on_cleanup.append(close)
    return guard
