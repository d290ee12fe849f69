"""A stand-in identity provider on 127.0.0.1: discovery document, JWKS, RS256 tokens signed
with keys generated here, and an RFC 7662 introspection endpoint for opaque tokens, so tests
exercise the real validation path without the network."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from joserfc import jwt
from joserfc.jwk import RSAKey

AUDIENCE = "flux-api"
# The resource server's client credentials at the provider, for introspection.
CLIENT_ID = "flux-resource-server"
CLIENT_SECRET = "s3cret:with-colon"


def new_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS256", "use": "sig"})


@pytest.fixture(scope="session")
def rsa_keys() -> dict[str, RSAKey]:
    """Generated once: RSA generation is the slow part of these tests."""
    return {kid: new_key(kid) for kid in ("key-1", "key-2", "rogue")}


def b64url(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class FakeClock:
    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


class IdentityProvider:
    """Serves what a real IdP serves and counts the JWKS downloads."""

    def __init__(self, signing: RSAKey) -> None:
        self.published: list[RSAKey] = [signing]
        self.signing = signing
        self.discovery = True
        self.discovery_issuer: str | None = None  # None: the real issuer
        self.jwks_path = "/protocol/openid-connect/certs"
        self.jwks_hits = 0
        self.discovery_hits = 0
        self.advertise_introspection = True
        self.introspection_path = "/protocol/openid-connect/token/introspect"
        self.introspection_hits = 0
        self.introspection_forms: list[dict[str, str]] = []
        self.opaque: dict[str, dict[str, Any]] = {}  # active opaque tokens and their claims
        self.issuer = ""  # set once the server listens

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get(self.jwks_path, self._jwks)
        app.router.add_get("/.well-known/jwks.json", self._jwks)
        app.router.add_post(self.introspection_path, self._introspect)
        return app

    async def _discovery(self, request: web.Request) -> web.Response:
        self.discovery_hits += 1
        if not self.discovery:
            raise web.HTTPNotFound()
        document = {
            "issuer": self.discovery_issuer or self.issuer,
            "jwks_uri": self.issuer + self.jwks_path,
            "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.issuer + "/token",
        }
        if self.advertise_introspection:
            document["introspection_endpoint"] = self.issuer + self.introspection_path
        return web.json_response(document)

    async def _introspect(self, request: web.Request) -> web.Response:
        """RFC 7662 §2: client authentication required, form-encoded `token`."""
        self.introspection_hits += 1
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.json_response({"error": "invalid_client"}, status=401)
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.introspection_forms.append(form)
        claims = self.opaque.get(form.get("token", ""))
        if claims is None:
            return web.json_response({"active": False})
        return web.json_response({"active": True, **claims})

    def opaque_token(self, **overrides: Any) -> str:
        """A random token only the provider knows, with the claims introspection reports."""
        token = secrets.token_urlsafe(24)
        defaults = {"client_id": "agent-7", "scope": "read", "token_type": "Bearer"}
        self.opaque[token] = self.claims(**{**defaults, **overrides})
        return token

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_hits += 1
        return web.json_response({"keys": [k.as_dict(private=False) for k in self.published]})

    def rotate(self, key: RSAKey) -> None:
        """Publish `key` beside the old one and sign with it from now on."""
        self.published = [*self.published, key]
        self.signing = key

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": "user-1",
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 300,
            "permissions": ["workflow:billing:*"],
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, key: RSAKey | None = None, typ: str = "JWT", **overrides: Any) -> str:
        key = key or self.signing
        header = {"alg": "RS256", "kid": key.kid, "typ": typ}
        return jwt.encode(header, self.claims(**overrides), key)

    def forged_hs256(self, **overrides: Any) -> str:
        """HS256 keyed with the published RSA public key: the classic algorithm confusion."""
        secret = self.signing.as_pem(private=False)
        signing_input = (
            b64url({"alg": "HS256", "kid": self.signing.kid, "typ": "JWT"})
            + "."
            + b64url(self.claims(**overrides))
        )
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + b64url(signature)

    def unsigned(self, **overrides: Any) -> str:
        return b64url({"alg": "none", "typ": "JWT"}) + "." + b64url(self.claims(**overrides)) + "."


@pytest.fixture
async def idp(rsa_keys: dict[str, RSAKey]) -> AsyncIterator[IdentityProvider]:
    provider = IdentityProvider(rsa_keys["key-1"])
    server = TestServer(provider.app(), host="127.0.0.1")
    await server.start_server()
    provider.issuer = str(server.make_url("")).rstrip("/")
    try:
        yield provider
    finally:
        await server.close()
