"""Turns an `Authorization` header into a `Principal`, and checks permissions (SPEC §5).

`Authenticator` implements `adapters.http.auth.RequestAuth` (`principal(request)`, `require`),
so the main server takes it where it takes `OpenAuth`. Errors are `core.errors.Unauthenticated`
(401) and `Forbidden` (403, with `permission` in its details).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from adapters.auth.api_keys import ApiKeys, looks_like_api_key
from adapters.auth.oidc import JwtVerifier
from adapters.config import AuthSettings
from core import permissions as perms
from core.errors import Unauthenticated
from core.permissions import ANY, Principal
from ports.auth import ApiKeyStore

_PRINCIPAL = web.RequestKey("flux_principal", Principal)
OPEN = Principal(subject="anonymous", permissions=frozenset({ANY}), via="open")


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header, or `Unauthenticated`."""
    if not authorization or not authorization.strip():
        raise Unauthenticated("credentials required: send 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("unsupported authorization scheme: use 'Bearer <token>'")
    return token


class Authenticator:
    """Authenticates API keys and OIDC bearer tokens according to the auth settings."""

    def __init__(
        self,
        settings: AuthSettings,
        api_keys: ApiKeyStore | ApiKeys | None = None,
        verifier: JwtVerifier | None = None,
    ) -> None:
        self.settings = settings
        if api_keys is not None and not isinstance(api_keys, ApiKeys):
            api_keys = ApiKeys(api_keys)
        # API keys switched off in the settings are refused even when a store is given.
        self.api_keys: ApiKeys | None = api_keys if settings.api_keys else None
        self.verifier = verifier

    @classmethod
    def open(cls) -> Authenticator:
        """Auth off: everyone may do everything (the default, as the seed says)."""
        return cls(AuthSettings(enabled=False))

    @property
    def enabled(self) -> bool:
        return bool(self.settings.enabled)

    async def authenticate(self, authorization: str | None) -> Principal:
        if not self.enabled:
            return OPEN
        token = bearer_token(authorization)
        if self.api_keys is not None and looks_like_api_key(token):
            return await self.api_keys.verify(token)
        if self.verifier is not None:
            claims = await self.verifier.verify(token)
            return self.principal_from_claims(claims)
        raise Unauthenticated("credentials not recognised")

    async def principal(self, request: web.Request) -> Principal:
        """`adapters.http.auth.RequestAuth`: the request's principal, authenticated once per
        request and then remembered on it."""
        cached = request.get(_PRINCIPAL)
        if isinstance(cached, Principal):
            return cached
        principal = await self.authenticate(request.headers.get("Authorization"))
        request[_PRINCIPAL] = principal
        return principal

    def principal_from_claims(self, claims: Mapping[str, Any]) -> Principal:
        oidc = self.settings.oidc
        granted = perms.permissions_from_claims(
            claims, oidc.permissions_claim, oidc.roles_claim, oidc.role_permissions
        )
        subject = claims.get("sub")
        return Principal(
            subject=subject if isinstance(subject, str) and subject else "unknown",
            permissions=granted,
            via="jwt",
        )

    def require(self, principal: Principal, permission: str) -> None:
        """`Forbidden` naming the missing permission unless the principal holds it."""
        perms.require(principal, permission)

    async def aclose(self) -> None:
        if self.verifier is not None:
            await self.verifier.aclose()


def verifier_from_settings(settings: AuthSettings, **options: Any) -> JwtVerifier | None:
    """A `JwtVerifier` for `settings.oidc` when auth and OIDC are both enabled."""
    oidc = settings.oidc
    if not settings.enabled or not oidc.enabled or not oidc.issuer:
        return None
    return JwtVerifier(
        oidc.issuer,
        oidc.audience,
        oidc.jwks_uri,
        introspection_endpoint=oidc.introspection_endpoint,
        introspection_client_id=oidc.introspection_client_id,
        introspection_client_secret=oidc.introspection_client_secret,
        **options,
    )
