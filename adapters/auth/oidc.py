"""Validation of OIDC / OAuth 2.0 bearer JWTs against the issuer's published keys (JWKS).

Keys come from the configured `jwks_uri`, else from the issuer's discovery document, else from
`{issuer}/.well-known/jwks.json`. The key set is cached; a token signed with a key id we do not
know triggers at most one refetch per `refetch_interval` (key rotation without letting a flood
of forged kids hammer the identity provider).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import aiohttp
from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
    UnsupportedAlgorithmError,
)
from joserfc.jwk import KeySet, import_key
from mcp.server.auth.provider import AccessToken

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
_ASYMMETRIC_KTY = {"RSA", "EC", "OKP"}


_NO_ROTATION = object()


class KeySetUnavailable(Exception):
    """The JWKS could not be fetched or parsed."""


def _is_symmetric(alg: str) -> bool:
    return alg.lower() == "none" or alg.upper().startswith("HS")


def _parse_key_set(document: Any) -> KeySet:
    """Import the usable signing keys of a JWKS; symmetric and encryption keys are skipped."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise KeySetUnavailable("JWKS document has no 'keys' list")
    keys = []
    for entry in document["keys"]:
        if not isinstance(entry, Mapping) or entry.get("kty") not in _ASYMMETRIC_KTY:
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            keys.append(import_key(dict(entry)))
        except (JoseError, ValueError, TypeError) as error:
            log.warning("skipping unusable JWKS key %r: %s", entry.get("kid"), error)
    if not keys:
        raise KeySetUnavailable("JWKS holds no usable signing key")
    return KeySet(keys)


class JwtVerifier:
    """Validates JWTs for one issuer (and audience, when configured) and returns their claims.

    Also usable as the mcp SDK's `TokenVerifier` through `verify_token`.
    """

    def __init__(
        self,
        issuer: str,
        audience: str | Iterable[str] | None = None,
        jwks_uri: str | None = None,
        *,
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
        self._jwks_url = jwks_uri  # the configured or discovered JWKS location
        self._session = session
        self._owns_session = session is None
        self._clock = clock
        self._leeway = leeway
        self._refetch_interval = refetch_interval
        self._cache_ttl = cache_ttl
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._required = tuple(required_claims)
        self._keys: KeySet | None = None
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last attempt, successful or not
        self._lock = asyncio.Lock()
        self.fetch_count = 0  # JWKS downloads so far (observability and tests)

    # -- public -----------------------------------------------------------------------------

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, or `Unauthenticated` with the reason it was refused."""
        header = self._header(token)
        kid = header.get("kid")
        keys = await self._key_set()
        try:
            decoded = self._decode(token, keys)
        except InvalidKeyIdError:
            # Maybe the issuer rotated its keys: refetch once (rate-limited), then retry.
            keys = await self._key_set(rotated_kid=kid)
            try:
                decoded = self._decode(token, keys)
            except InvalidKeyIdError as error:
                raise Unauthenticated(f"token signed with unknown key id {kid!r}") from error
        claims = decoded.claims
        self._validate_claims(claims)
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
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    # -- validation -------------------------------------------------------------------------

    def _header(self, token: str) -> dict[str, Any]:
        if not isinstance(token, str) or token.count(".") != 2:
            raise Unauthenticated("bearer token is not a JWT")
        try:
            header = jws.extract_compact(token.encode()).headers()
        except (JoseError, ValueError) as error:
            raise Unauthenticated("malformed JWT") from error
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

    def _validate_claims(self, claims: dict[str, Any]) -> None:
        base = self.issuer.rstrip("/")
        options: dict[str, Any] = {
            # Issuers are compared modulo one trailing slash: Auth0 issues "https://x/", and
            # configs are as often typed without it.
            "iss": {"essential": True, "values": [base, base + "/"]},
            "exp": {"essential": True},
        }
        if self.audience:
            options["aud"] = {"essential": True, "values": list(self.audience)}
        for name in self._required:
            options.setdefault(name, {"essential": True})
        registry = jwt.JWTClaimsRegistry(
            now=lambda: int(self._clock()), leeway=self._leeway, **options
        )
        try:
            registry.validate(claims)
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
            raise Unauthenticated(f"invalid token claim: {error.description}") from error

    # -- keys -------------------------------------------------------------------------------

    async def _key_set(self, rotated_kid: Any = _NO_ROTATION) -> KeySet:
        """The cached key set; refreshed when older than the cache TTL, or when a token names
        a key id we lack (`rotated_kid`), at most once per refetch interval either way."""
        rotation = rotated_kid is not _NO_ROTATION
        if self._keys is not None and not rotation and not self._stale():
            return self._keys
        async with self._lock:
            if self._keys is not None:
                if rotation and rotated_kid is not None and _has_kid(self._keys, rotated_kid):
                    return self._keys  # a concurrent request already fetched the new key
                if not rotation and not self._stale():
                    return self._keys
                if not self._may_refetch():
                    return self._keys
            elif not self._may_refetch():
                raise Unauthenticated("signing keys of the identity provider are unavailable")
            self._attempted_at = self._clock()
            try:
                keys = _parse_key_set(await self._fetch_jwks())
            except KeySetUnavailable as error:
                log.warning("cannot load JWKS for %s: %s", self.issuer, error)
                if self._keys is None:
                    raise Unauthenticated(
                        f"signing keys of the identity provider are unavailable: {error}"
                    ) from error
                return self._keys  # keep serving with the keys we had
            self._keys = keys
            self._fetched_at = self._attempted_at
            self.fetch_count += 1
            return keys

    def _stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self._cache_ttl

    def _may_refetch(self) -> bool:
        return (
            self._attempted_at is None
            or self._clock() - self._attempted_at >= self._refetch_interval
        )

    async def _fetch_jwks(self) -> Any:
        if self._jwks_url is None:
            url, found = await self._discover()
            if found:  # a fallback is not remembered, so discovery is tried again next time
                self._jwks_url = url
        else:
            url = self._jwks_url
        return await self._get_json(url)

    async def _discover(self) -> tuple[str, bool]:
        """The JWKS URL from OIDC discovery, else the conventional well-known path."""
        base = self.issuer.rstrip("/")
        try:
            document = await self._get_json(f"{base}/.well-known/openid-configuration")
        except KeySetUnavailable as error:
            log.info("OIDC discovery unavailable for %s (%s); using jwks.json", base, error)
            return f"{base}/.well-known/jwks.json", False
        issuer = document.get("issuer") if isinstance(document, Mapping) else None
        if not isinstance(issuer, str) or issuer.rstrip("/") != base:
            # A document for another issuer could hand us an attacker's keys: never use it.
            raise KeySetUnavailable(f"discovery document names issuer {issuer!r}, not {base!r}")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri:
            return f"{base}/.well-known/jwks.json", True
        return jwks_uri, True

    async def _get_json(self, url: str) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.get(
                url, timeout=self._timeout, headers={"Accept": "application/json"}
            ) as response:
                if response.status != 200:
                    raise KeySetUnavailable(f"GET {url} answered {response.status}")
                return await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise KeySetUnavailable(f"GET {url} failed: {error!r}") from error


def _has_kid(keys: KeySet, kid: object) -> bool:
    return any(key.kid == kid for key in keys.keys)


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
