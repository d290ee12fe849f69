"""RFC 9728 metadata routes and the bearer guard of a standalone `/mcp`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from mcp.server.auth.provider import AccessToken

from adapters.auth.resource_metadata import (
    McpAuth,
    ProtectedResource,
    protected_resource,
    setup_mcp_auth,
    unauthorized,
)
from adapters.config import AuthSettings, OidcSettings, Settings, StandaloneOptions
from tests.auth.conftest import AUDIENCE, IdentityProvider


async def serve(idp: IdentityProvider, resource: ProtectedResource) -> TestClient:
    app = web.Application()
    guard = setup_mcp_auth(app, resource=resource, scopes_supported=["workflows"])
    assert isinstance(guard, McpAuth)

    async def mcp(request: web.Request) -> web.StreamResponse:
        outcome = await guard(request)
        if isinstance(outcome, web.StreamResponse):
            return outcome
        assert isinstance(outcome, AccessToken)
        return web.json_response({"subject": outcome.subject})

    app.router.add_route("*", "/mcp", mcp)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


@pytest.fixture
async def client(idp: IdentityProvider) -> AsyncIterator[TestClient]:
    client = await serve(idp, ProtectedResource(idp.issuer, AUDIENCE, resource_name="billing"))
    yield client
    await client.close()


async def test_metadata_is_served_at_both_well_known_urls(client, idp):
    base = str(client.make_url("")).rstrip("/")
    for path in (
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ):
        response = await client.get(path)
        assert response.status == 200
        assert await response.json() == {
            "resource": base + "/mcp",
            "authorization_servers": [idp.issuer],
            "bearer_methods_supported": ["header"],
            "resource_name": "billing",
            "scopes_supported": ["workflows"],
        }


async def test_no_token_gets_401_pointing_at_the_metadata(client):
    response = await client.post("/mcp", json={})
    assert response.status == 401
    base = str(client.make_url("")).rstrip("/")
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer resource_metadata="{base}/.well-known/oauth-protected-resource/mcp"'
    )


async def test_bad_token_gets_invalid_token(client, idp):
    response = await client.post(
        "/mcp", headers={"Authorization": f"Bearer {idp.token(aud='other')}"}
    )
    assert response.status == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer error="invalid_token", error_description="')
    assert "audience" in challenge and 'resource_metadata="' in challenge


async def test_valid_token_passes(client, idp):
    response = await client.post("/mcp", headers={"Authorization": f"Bearer {idp.token()}"})
    assert response.status == 200
    assert await response.json() == {"subject": "user-1"}


async def test_base_url_overrides_the_request(idp):
    resource = ProtectedResource(idp.issuer, base_url="https://svc.example.com/billing/")
    client = await serve(idp, resource)
    try:
        challenge = (await client.post("/mcp")).headers["WWW-Authenticate"]
        expected = "https://svc.example.com/.well-known/oauth-protected-resource/billing/mcp"
        assert challenge == f'Bearer resource_metadata="{expected}"'
        for path in (
            "/.well-known/oauth-protected-resource/mcp",
            "/.well-known/oauth-protected-resource/billing/mcp",
        ):
            body = await (await client.get(path)).json()
            assert body["resource"] == "https://svc.example.com/billing/mcp"
    finally:
        await client.close()


def options(**kw) -> StandaloneOptions:
    oidc = kw.pop("oidc", OidcSettings())
    return StandaloneOptions(
        settings=Settings(auth=AuthSettings(oidc=oidc)), service="billing", **kw
    )


def test_flags_win_then_oidc_settings_then_open():
    flags = protected_resource(
        options(mcp_issuer="https://idp.example.com", mcp_base_url="https://svc.example.com")
    )
    assert flags is not None
    assert (flags.issuer, flags.base_url) == ("https://idp.example.com", "https://svc.example.com")
    assert flags.resource_name == "Flux service billing"

    inherited = protected_resource(
        options(oidc=OidcSettings(enabled=True, issuer="https://corp.example.com", audience="api"))
    )
    assert inherited is not None
    assert (inherited.issuer, inherited.audience) == ("https://corp.example.com", "api")

    assert protected_resource(options()) is None
    assert setup_mcp_auth(web.Application(), options()) is None


def test_descriptions_are_kept_to_the_rfc_6750_character_set():
    request = make_mocked_request("POST", "/mcp", headers={"Host": "svc.example.com"})
    resource = ProtectedResource("https://idp.example.com")
    response = unauthorized(request, resource, "invalid_token", 'Missing "exp" claim — \\x')
    assert response.headers["WWW-Authenticate"] == (
        'Bearer error="invalid_token", error_description="Missing \'exp\' claim ? /x", '
        'resource_metadata="http://svc.example.com/.well-known/oauth-protected-resource/mcp"'
    )
    assert json.loads(response.text or "")["message"] == 'Missing "exp" claim — \\x'
