"""Opaque bearer tokens through RFC 7662 introspection, against the stand-in provider."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.auth.authenticator import Authenticator
from adapters.auth.oidc import JwtVerifier
from adapters.auth.provider import ProviderUnavailable, read_discovery
from adapters.auth.resource_metadata import ProtectedResource, setup_mcp_auth
from adapters.config import AuthSettings, OidcSettings
from core.errors import Unauthenticated
from core.model import WorkflowRef
from core.permissions import run_permission
from tests.auth.conftest import AUDIENCE, CLIENT_ID, CLIENT_SECRET, FakeClock, IdentityProvider

MakeVerifier = Callable[..., JwtVerifier]


@pytest.fixture
async def make_verifier(idp: IdentityProvider) -> AsyncIterator[MakeVerifier]:
    made: list[JwtVerifier] = []

    def make(**options) -> JwtVerifier:
        options.setdefault("audience", AUDIENCE)
        options.setdefault("introspection_client_id", CLIENT_ID)
        options.setdefault("introspection_client_secret", CLIENT_SECRET)
        verifier = JwtVerifier(options.pop("issuer", idp.issuer), **options)
        made.append(verifier)
        return verifier

    yield make
    for verifier in made:
        await verifier.aclose()


async def refused(verifier: JwtVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await verifier.verify(token)
    return caught.value.message


async def test_opaque_token_is_introspected_at_the_discovered_endpoint(idp, make_verifier):
    token = idp.opaque_token(sub="alice")
    claims = await make_verifier().verify(token)
    assert (claims["sub"], claims["client_id"], claims["active"]) == ("alice", "agent-7", True)
    assert idp.discovery_hits == 1 and idp.introspection_hits == 1
    assert idp.introspection_forms == [{"token": token, "token_type_hint": "access_token"}]
    assert idp.jwks_hits == 0  # an opaque token needs no signing key


async def test_configured_endpoint_skips_discovery(idp, make_verifier):
    verifier = make_verifier(introspection_endpoint=idp.issuer + idp.introspection_path)
    assert (await verifier.verify(idp.opaque_token()))["sub"] == "user-1"
    assert idp.discovery_hits == 0


async def test_inactive_token_is_refused(idp, make_verifier):
    assert "not active" in await refused(make_verifier(), "no-such-token")
    assert idp.introspection_hits == 1


async def test_wrong_client_credentials_are_refused(idp, make_verifier):
    verifier = make_verifier(introspection_client_secret="wrong")
    assert "answered 401" in await refused(verifier, idp.opaque_token())


async def test_introspected_claims_get_the_jwt_checks(idp, make_verifier):
    verifier = make_verifier()
    assert "audience" in await refused(verifier, idp.opaque_token(aud="someone-else"))
    assert "issuer" in await refused(verifier, idp.opaque_token(iss="https://evil.example.com"))
    assert "expired" in await refused(verifier, idp.opaque_token(exp=int(time.time()) - 120))
    assert "exp" in await refused(verifier, idp.opaque_token(exp=None))
    assert "aud" in await refused(verifier, idp.opaque_token(aud=None))


async def test_without_introspection_an_opaque_token_costs_no_request(idp, make_verifier):
    verifier = make_verifier(introspection_client_id=None, introspection_client_secret=None)
    assert "not a JWT" in await refused(verifier, idp.opaque_token())
    assert idp.introspection_hits == 0 and idp.discovery_hits == 0


async def test_jwts_are_still_checked_locally(idp, make_verifier):
    verifier = make_verifier()
    assert (await verifier.verify(idp.token(sub="bob")))["sub"] == "bob"
    assert "audience" in await refused(verifier, idp.token(aud="other"))
    assert idp.introspection_hits == 0


async def test_provider_without_endpoint_is_asked_once_per_interval(idp, make_verifier):
    idp.advertise_introspection = False
    clock = FakeClock()
    verifier = make_verifier(clock=clock, refetch_interval=30)
    for _ in range(3):
        assert "introspection is unavailable" in await refused(verifier, idp.opaque_token())
    assert idp.discovery_hits == 1 and idp.introspection_hits == 0
    clock.now += 31
    idp.advertise_introspection = True
    assert await verifier.verify(idp.opaque_token())
    assert idp.discovery_hits == 2


async def test_unreachable_introspection_endpoint_is_unauthenticated(make_verifier):
    verifier = make_verifier(
        issuer="http://127.0.0.1:9", introspection_endpoint="http://127.0.0.1:9/introspect"
    )
    assert "unavailable" in await refused(verifier, "opaque-token")


async def test_opaque_token_becomes_a_principal(idp):
    invoice = run_permission(WorkflowRef("billing", "invoice"))
    oidc = OidcSettings(enabled=True, issuer=idp.issuer, audience=AUDIENCE)
    verifier = JwtVerifier(
        idp.issuer,
        AUDIENCE,
        introspection_client_id=CLIENT_ID,
        introspection_client_secret=CLIENT_SECRET,
    )
    auth = Authenticator(AuthSettings(enabled=True, oidc=oidc), None, verifier)
    try:
        principal = await auth.authenticate(f"Bearer {idp.opaque_token(sub='carol')}")
        assert (principal.subject, principal.via) == ("carol", "jwt")
        auth.require(principal, invoice)
    finally:
        await auth.aclose()


async def test_mcp_guard_accepts_opaque_tokens(idp):
    app = web.Application()
    verifier = JwtVerifier(
        idp.issuer,
        AUDIENCE,
        introspection_client_id=CLIENT_ID,
        introspection_client_secret=CLIENT_SECRET,
    )
    guard = setup_mcp_auth(app, resource=ProtectedResource(idp.issuer, AUDIENCE), verifier=verifier)
    assert guard is not None

    async def mcp(request: web.Request) -> web.StreamResponse:
        outcome = await guard(request)
        if isinstance(outcome, web.StreamResponse):
            return outcome
        return web.json_response({"client": outcome.client_id, "scopes": outcome.scopes})

    app.router.add_route("*", "/mcp", mcp)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        token = idp.opaque_token(scope="read write")
        ok = await client.post("/mcp", headers={"Authorization": f"Bearer {token}"})
        assert await ok.json() == {"client": "agent-7", "scopes": ["read", "write"]}
        inactive = await client.post("/mcp", headers={"Authorization": "Bearer revoked-token"})
        assert inactive.status == 401
        challenge = inactive.headers["WWW-Authenticate"]
        assert challenge.startswith(
            'Bearer error="invalid_token", error_description="token is not active"'
        )


@pytest.mark.parametrize(
    ("field", "url"),
    [
        ("jwks_uri", "http://idp.example.com/certs"),
        ("introspection_endpoint", "http://idp.example.com/introspect"),
    ],
)
def test_https_issuer_may_not_downgrade_its_endpoints(field, url):
    issuer = "https://idp.example.com"
    document = {"issuer": issuer, field: url}
    with pytest.raises(ProviderUnavailable, match="https"):
        read_discovery(document, issuer)
    secure = {"issuer": issuer, field: url.replace("http:", "https:")}
    assert read_discovery(secure, issuer)[field] == secure[field]


def test_plain_http_issuer_keeps_its_scheme():
    issuer = "http://keycloak:8080/realms/acme"
    document = {"issuer": issuer, "jwks_uri": issuer + "/certs"}
    assert read_discovery(document, issuer)["jwks_uri"] == issuer + "/certs"
    with pytest.raises(ProviderUnavailable, match="names issuer"):
        read_discovery({**document, "issuer": "http://other"}, issuer)
