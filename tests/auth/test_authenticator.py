"""Authenticator: API keys and OIDC tokens to principals, permission checks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.auth.api_keys import ApiKeys, hash_secret, looks_like_api_key
from adapters.auth.authenticator import Authenticator, verifier_from_settings
from adapters.auth.oidc import JwtVerifier
from adapters.config import AuthSettings, OidcSettings
from adapters.storage.api_keys import MemoryApiKeyStore
from core.errors import Forbidden, InvalidRequest, NotFound, Unauthenticated
from core.model import WorkflowRef
from core.permissions import ADMIN, run_permission
from tests.auth.conftest import AUDIENCE, IdentityProvider

INVOICE = run_permission(WorkflowRef("billing", "invoice"))


def settings(issuer: str | None = None, **oidc) -> AuthSettings:
    if issuer is None:
        return AuthSettings(enabled=True)
    return AuthSettings(
        enabled=True, oidc=OidcSettings(enabled=True, issuer=issuer, audience=AUDIENCE, **oidc)
    )


@pytest.fixture
def keys() -> ApiKeys:
    return ApiKeys(MemoryApiKeyStore(), clock=lambda: 100.0)


@pytest.fixture
async def jwt_auth(idp: IdentityProvider, keys: ApiKeys) -> AsyncIterator[Authenticator]:
    auth = Authenticator(
        settings(
            idp.issuer,
            roles_claim="realm_access.roles",
            role_permissions={"operator": ("admin", "workflow:*:*:run")},
        ),
        keys,
        JwtVerifier(idp.issuer, AUDIENCE),
    )
    yield auth
    await auth.aclose()


async def test_disabled_auth_lets_everyone_do_everything():
    auth = Authenticator.open()
    principal = await auth.authenticate(None)
    auth.require(principal, ADMIN)
    auth.require(principal, INVOICE)


async def test_api_key_create_verify_revoke(keys):
    auth = Authenticator(settings(), keys)
    created = await keys.create("ci", ["workflow:billing:*"])
    assert looks_like_api_key(created.secret)
    assert created.key.created_at == 100.0
    # Only the hash is stored, never the secret.
    assert await keys.store.by_hash(hash_secret(created.secret)) == created.key

    principal = await auth.authenticate(f"Bearer {created.secret}")
    assert principal.subject == "api-key:ci" and principal.via == "api_key"
    auth.require(principal, INVOICE)

    revoked = await keys.revoke("ci")
    assert revoked.revoked
    with pytest.raises(Unauthenticated, match="revoked"):
        await auth.authenticate(f"Bearer {created.secret}")


async def test_unknown_api_key_and_bad_headers_are_unauthenticated(keys):
    auth = Authenticator(settings(), keys)
    for header in (None, "", "Bearer", "Basic dXNlcjpwdw==", "Bearer flux_nope"):
        with pytest.raises(Unauthenticated):
            await auth.authenticate(header)


async def test_api_keys_can_be_switched_off(keys):
    created = await keys.create("ci", ["admin"])
    auth = Authenticator(AuthSettings(enabled=True, api_keys=False), keys)
    with pytest.raises(Unauthenticated):
        await auth.authenticate(f"Bearer {created.secret}")


async def test_api_key_input_is_validated(keys):
    with pytest.raises(InvalidRequest):
        await keys.create("", ["admin"])
    with pytest.raises(InvalidRequest):
        await keys.create("ci", ["has space"])
    with pytest.raises(NotFound):
        await keys.revoke("missing")


async def test_forbidden_names_the_missing_permission(keys):
    auth = Authenticator(settings(), keys)
    created = await keys.create("reader", ["workflow:analytics:*"])
    principal = await auth.authenticate(f"Bearer {created.secret}")
    with pytest.raises(Forbidden) as caught:
        auth.require(principal, INVOICE)
    assert caught.value.details == {"permission": INVOICE}
    assert INVOICE in caught.value.message
    with pytest.raises(Forbidden, match="'admin'"):
        auth.require(principal, ADMIN)


async def test_jwt_permissions_and_roles_become_the_principal(idp, jwt_auth):
    token = idp.token(sub="alice", permissions=["workflow:billing:invoice:run"])
    principal = await jwt_auth.authenticate(f"Bearer {token}")
    assert (principal.subject, principal.via) == ("alice", "jwt")
    jwt_auth.require(principal, INVOICE)
    with pytest.raises(Forbidden):
        jwt_auth.require(principal, ADMIN)

    operator = idp.token(permissions=None, realm_access={"roles": ["operator"]})
    principal = await jwt_auth.authenticate(f"bearer {operator}")
    jwt_auth.require(principal, ADMIN)
    jwt_auth.require(principal, INVOICE)


async def test_bad_jwt_is_unauthenticated(idp, jwt_auth):
    with pytest.raises(Unauthenticated, match="audience"):
        await jwt_auth.authenticate(f"Bearer {idp.token(aud='other')}")


async def test_verifier_from_settings_follows_the_oidc_switch(idp):
    assert verifier_from_settings(AuthSettings(enabled=True)) is None
    verifier = verifier_from_settings(settings(idp.issuer))
    assert verifier is not None and verifier.audience == (AUDIENCE,)
    await verifier.aclose()


async def test_principal_is_authenticated_once_per_request(keys):
    auth = Authenticator(settings(), keys)
    created = await keys.create("ci", ["workflow:billing:*"])
    seen: list[bool] = []

    async def run(request: web.Request) -> web.Response:
        try:
            principal = await auth.principal(request)
        except Unauthenticated:
            return web.json_response({}, status=401)
        seen.append(await auth.principal(request) is principal)
        return web.json_response({"subject": principal.subject})

    app = web.Application()
    app.router.add_post("/run", run)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        ok = await client.post("/run", headers={"Authorization": f"Bearer {created.secret}"})
        assert ok.status == 200 and (await ok.json())["subject"] == "api-key:ci"
        assert (await client.post("/run")).status == 401
    assert seen == [True]
