"""Validation of OAuth 2.0 / OIDC bearer tokens for one issuer.

A JWT access token (RFC 9068) is checked here: its signature against the issuer's published
keys, then its claims through authlib's RFC 9068 claims model. A token that is not a JWT (an
opaque token) is handed to the issuer's introspection endpoint (RFC 7662) when one is known,
and the answer's claims go through the very same checks. Fetching and caching what the
provider publishes lives in `adapters.auth.provider`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import aiohttp
from authlib.oauth2.rfc9068.claims import JWTAccessTokenClaims
from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
    UnsupportedAlgorithmError,
)
from joserfc.jwk import KeySet
from mcp.server.auth.provider import AccessToken

from adapters.auth.provider import ProviderClient
from core.errors import Unauthenticated

log = logging.getLogger(__name__)

# Asymmetric only: a symmetric algorithm would let anyone holding the *public* key sign tokens.
DEFAULT_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "EdDSA",
)

# RFC 9068 asks for "at+jwt", but Keycloak, Entra ID and Okta label their access tokens plain
# "JWT": refusing that would refuse them all. Other types (logout, DPoP proofs, security event
# tokens, ...) are never access tokens.
_ACCESS_TOKEN_TYPES = {"at+jwt", "application/at+jwt", "jwt"}


class _AccessTokenClaims(JWTAccessTokenClaims):
    """authlib's RFC 9068 claims, with the `typ` rule widened as said above."""

    def validate(self, now: Any = None, leeway: int = 0) -> None:
        typ = self.header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in _ACCESS_TOKEN_TYPES):
            raise InvalidClaimError("typ")
        # Past RFC 9068's own (stricter) `typ` rule to the claims checks it inherits.
        super(JWTAccessTokenClaims, self).validate(now, leeway)


def _is_symmetric(alg: str) -> bool:
    return alg.lower() == "none" or alg.upper().startswith("HS")


class JwtVerifier:
    """Validates bearer tokens for one issuer (and audience, when configured) and returns their
    claims: JWTs locally, opaque tokens by introspection when the provider offers it.

    Also usable as the mcp SDK's `TokenVerifier` through `verify_token`.
    """

    def __init__(
        self,
        issuer: str,
        audience: str | Iterable[str] | None = None,
        jwks_uri: str | None = None,
        *,
        introspection_endpoint: str | None = None,
        introspection_client_id: str | None = None,
        introspection_client_secret: str | None = None,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        leeway: int = 30,
        refetch_interval: float = 30.0,
        cache_ttl: float = 3600.0,
        timeout: float = 10.0,
        required_claims: Iterable[str] = (),
    ) -> None:
        if not issuer:
            raise ValueError("an issuer is required")
        self.algorithms = tuple(algorithms)
        refused = [alg for alg in self.algorithms if _is_symmetric(alg)]
        if refused or not self.algorithms:
            raise ValueError(f"only asymmetric JWT algorithms are allowed, got {refused}")
        self.issuer = issuer
        if isinstance(audience, str):
            audience = [audience] if audience else []
        self.audience = tuple(audience) if audience else None
        self.jwks_uri = jwks_uri
        self.introspection_endpoint = introspection_endpoint
        self._clock = clock
        self._leeway = leeway
        self._required = tuple(required_claims)
        self.provider = ProviderClient(
            issuer,
            jwks_uri,
            introspection_endpoint=introspection_endpoint,
            introspection_client_id=introspection_client_id,
            introspection_client_secret=introspection_client_secret,
            session=session,
            clock=clock,
            refetch_interval=refetch_interval,
            cache_ttl=cache_ttl,
            timeout=timeout,
        )

    @property
    def fetch_count(self) -> int:
        """JWKS downloads so far (observability and tests)."""
        return self.provider.fetch_count

    # -- public -----------------------------------------------------------------------------

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, or `Unauthenticated` with the reason it was refused."""
        header = self._header(token)
        if header is None:
            return await self._introspected(token)
        kid = header.get("kid")
        keys = await self.provider.key_set()
        try:
            decoded = self._decode(token, keys)
        except InvalidKeyIdError:
            # Maybe the issuer rotated its keys: refetch once (rate-limited), then retry.
            keys = await self.provider.key_set(rotated_kid=kid)
            try:
                decoded = self._decode(token, keys)
            except InvalidKeyIdError as error:
                raise Unauthenticated(f"token signed with unknown key id {kid!r}") from error
        claims = dict(decoded.claims)
        self._validate_claims(claims, dict(decoded.header))
        return claims

    async def verify_token(self, token: str) -> AccessToken | None:
        """The mcp SDK's `TokenVerifier` shape: None for any refused token."""
        try:
            claims = await self.verify(token)
        except Unauthenticated as error:
            log.info("bearer token refused: %s", error.message)
            return None
        return access_token(token, claims)

    async def aclose(self) -> None:
        await self.provider.aclose()

    # -- validation -------------------------------------------------------------------------

    def _header(self, token: str) -> dict[str, Any] | None:
        """The JWS header of a JWT with an accepted algorithm; None for a token that is not a
        JWT, which only introspection can judge."""
        if not isinstance(token, str) or not token.strip():
            raise Unauthenticated("bearer token is empty")
        header: dict[str, Any] | None = None
        if token.count(".") == 2:
            try:
                header = dict(jws.extract_compact(token.encode()).headers())
            except (JoseError, ValueError):
                header = None
        if header is None:
            if not self.provider.introspects:
                raise Unauthenticated("bearer token is not a JWT")
            return None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise Unauthenticated(f"JWT algorithm {alg!r} is not accepted")
        return header

    def _decode(self, token: str, keys: KeySet) -> jwt.Token:
        try:
            return jwt.decode(token, keys, algorithms=list(self.algorithms))
        except InvalidKeyIdError:
            raise
        except UnsupportedAlgorithmError as error:
            raise Unauthenticated("JWT algorithm is not accepted") from error
        except BadSignatureError as error:
            raise Unauthenticated("JWT signature is invalid") from error
        except (JoseError, ValueError) as error:
            raise Unauthenticated(f"JWT cannot be verified: {error}") from error

    async def _introspected(self, token: str) -> dict[str, Any]:
        answer = await self.provider.introspect(token)
        if not answer.get("active"):
            raise Unauthenticated("token is not active")
        claims = dict(answer)
        self._validate_claims(claims, {})
        return claims

    def _claims_options(self) -> dict[str, dict[str, Any]]:
        base = self.issuer.rstrip("/")
        options: dict[str, dict[str, Any]] = {
            # Issuers are compared modulo one trailing slash: Auth0 issues "https://x/", and
            # configs are as often typed without it.
            "iss": {"essential": True, "values": [base, base + "/"]},
            "exp": {"essential": True},
        }
        if self.audience:
            options["aud"] = {"essential": True, "values": list(self.audience)}
        for name in self._required:
            options.setdefault(name, {"essential": True})
        return options

    def _validate_claims(self, claims: dict[str, Any], header: dict[str, Any]) -> None:
        checked = _AccessTokenClaims(claims, header, self._claims_options())
        try:
            checked.validate(now=lambda: int(self._clock()), leeway=self._leeway)
        except ExpiredTokenError as error:
            raise Unauthenticated("token has expired") from error
        except MissingClaimError as error:
            raise Unauthenticated(f"token lacks required claim(s): {error.description}") from error
        except ClaimError as error:
            claim = getattr(error, "claim", None) or error.description
            if claim == "iss":
                raise Unauthenticated("token was issued by another issuer") from error
            if claim == "aud":
                raise Unauthenticated("token is meant for another audience") from error
            if claim == "typ":
                typ = header.get("typ")
                raise Unauthenticated(f"token type {typ!r} is not an access token") from error
            raise Unauthenticated(f"invalid token claim: {error.description}") from error


def access_token(token: str, claims: Mapping[str, Any]) -> AccessToken:
    """The mcp SDK's view of a validated token."""
    scope = claims.get("scope") or claims.get("scp") or []
    scopes = scope.split() if isinstance(scope, str) else [s for s in scope if isinstance(s, str)]
    aud = claims.get("aud")
    subject = claims.get("sub") if isinstance(claims.get("sub"), str) else None
    client_id = claims.get("azp") or claims.get("client_id") or subject or "unknown"
    exp = claims.get("exp")
    return AccessToken(
        token=token,
        client_id=str(client_id),
        scopes=scopes,
        expires_at=int(exp) if isinstance(exp, int | float) else None,
        resource=aud if isinstance(aud, str) else None,
        subject=subject,
        claims=dict(claims),
    )
