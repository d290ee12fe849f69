"""What the bearer-token verifier asks the identity provider: its discovery metadata, its
signing keys (JWKS), and token introspection (RFC 7662) for tokens that are not JWTs.

authlib supplies the models (`OpenIDProviderMetadata` to read and check the discovery document,
`IntrospectionToken` for an introspection answer, `ClientAuth` for the client credentials);
aiohttp does the I/O, because authlib's own HTTP clients are either blocking or httpx-based,
and nothing here may block the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import aiohttp
from authlib.common.security import is_secure_transport
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc7662 import IntrospectionToken
from authlib.oidc.discovery import OpenIDProviderMetadata, get_well_known_url
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, import_key

from core.errors import Unauthenticated

log = logging.getLogger(__name__)

_ASYMMETRIC_KTY = {"RSA", "EC", "OKP"}
NO_ROTATION = object()


class ProviderUnavailable(Exception):
    """A document of the identity provider could not be fetched, parsed or trusted."""


def parse_key_set(document: Any) -> KeySet:
    """The usable signing keys of a JWKS; symmetric and encryption keys are skipped."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise ProviderUnavailable("JWKS document has no 'keys' list")
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
        raise ProviderUnavailable("JWKS holds no usable signing key")
    return KeySet(keys)


def read_discovery(document: Any, issuer: str) -> OpenIDProviderMetadata:
    """The discovery document of `issuer`, refused when it names another issuer."""
    if not isinstance(document, Mapping):
        raise ProviderUnavailable("discovery document is not a JSON object")
    metadata = OpenIDProviderMetadata(dict(document))
    named = metadata.get("issuer")
    base = issuer.rstrip("/")
    if not isinstance(named, str) or named.rstrip("/") != base:
        # A document for another issuer could hand us an attacker's keys: never use it.
        raise ProviderUnavailable(f"discovery document names issuer {named!r}, not {base!r}")
    # Only the fields we use are checked: a full `validate()` would refuse most real providers
    # over fields we never read. The https rules are skipped for an issuer configured over plain
    # http (a development IdP inside a compose network): the operator already chose that.
    if is_secure_transport(issuer):
        try:
            metadata.validate_issuer()
            if metadata.get("jwks_uri") is not None:
                metadata.validate_jwks_uri()
            metadata.validate_introspection_endpoint()
        except ValueError as error:
            raise ProviderUnavailable(f"discovery document is invalid: {error}") from error
    return metadata


class ProviderClient:
    """The cached key set and discovery document of one issuer, and its introspection endpoint.

    The key set is refreshed when older than `cache_ttl`, or when a token names a key id it
    lacks; either way at most once per `refetch_interval`, so a flood of forged key ids cannot
    turn into a flood of requests to the provider.
    """

    def __init__(
        self,
        issuer: str,
        jwks_uri: str | None = None,
        *,
        introspection_endpoint: str | None = None,
        introspection_client_id: str | None = None,
        introspection_client_secret: str | None = None,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float],
        refetch_interval: float,
        cache_ttl: float,
        timeout: float,
    ) -> None:
        self.issuer = issuer
        self._jwks_url = jwks_uri
        self._introspection_url = introspection_endpoint
        self._client = (
            ClientAuth(introspection_client_id, introspection_client_secret or "")
            if introspection_client_id
            else None
        )
        self._session = session
        self._owns_session = session is None
        self._clock = clock
        self._refetch_interval = refetch_interval
        self._cache_ttl = cache_ttl
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._keys: KeySet | None = None
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._metadata: OpenIDProviderMetadata | None = None
        self._discovery_attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self._discovery_lock = asyncio.Lock()
        self.fetch_count = 0

    @property
    def introspects(self) -> bool:
        """Whether opaque tokens can be introspected: an endpoint was configured, or client
        credentials were, so the endpoint may come from discovery."""
        return bool(self._introspection_url or self._client)

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    # -- keys -------------------------------------------------------------------------------

    async def key_set(self, rotated_kid: Any = NO_ROTATION) -> KeySet:
        """The cached key set, refreshed as the class says; `rotated_kid` is the key id a
        token named that the cached set lacks."""
        rotation = rotated_kid is not NO_ROTATION
        if self._keys is not None and not rotation and not self._stale():
            return self._keys
        async with self._lock:
            if self._keys is not None:
                if rotation and rotated_kid is not None and _has_kid(self._keys, rotated_kid):
                    return self._keys  # a concurrent request already fetched the new key
                if not rotation and not self._stale():
                    return self._keys
                if not _elapsed(self._clock, self._attempted_at, self._refetch_interval):
                    return self._keys
            elif not _elapsed(self._clock, self._attempted_at, self._refetch_interval):
                raise Unauthenticated("signing keys of the identity provider are unavailable")
            self._attempted_at = self._clock()
            try:
                keys = parse_key_set(await self._get_json(await self._jwks_location()))
            except ProviderUnavailable as error:
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

    async def _jwks_location(self) -> str:
        if self._jwks_url is not None:
            return self._jwks_url
        fallback = self.issuer.rstrip("/") + "/.well-known/jwks.json"
        metadata = await self._discover()
        if metadata is None:
            return fallback  # not remembered, so discovery is tried again on the next fetch
        jwks_uri = metadata.get("jwks_uri")
        self._jwks_url = jwks_uri if isinstance(jwks_uri, str) and jwks_uri else fallback
        return self._jwks_url

    async def _discover(self) -> OpenIDProviderMetadata | None:
        """The discovery document, or None when the provider publishes none; one that names
        another issuer raises."""
        url = get_well_known_url(self.issuer, external=True)
        self._discovery_attempted_at = self._clock()
        try:
            document = await self._get_json(url)
        except ProviderUnavailable as error:
            log.info("OIDC discovery unavailable for %s (%s)", self.issuer, error)
            return None
        self._metadata = read_discovery(document, self.issuer)
        return self._metadata

    # -- introspection ----------------------------------------------------------------------

    async def introspect(self, token: str) -> IntrospectionToken:
        """The provider's answer about an opaque token (RFC 7662), active or not."""
        url = await self._introspection_location()
        if url is None:
            raise Unauthenticated("token introspection is unavailable at the identity provider")
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        body = urlencode({"token": token, "token_type_hint": "access_token"})
        if self._client is not None:
            url, headers, body = self._client.prepare("POST", url, headers, body)
        try:
            async with self._http().post(
                url, data=body, headers=headers, timeout=self._timeout
            ) as response:
                if response.status != 200:
                    raise Unauthenticated(f"token introspection answered {response.status}")
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            log.warning("token introspection at %s failed: %r", url, error)
            raise Unauthenticated("token introspection is unavailable") from error
        if not isinstance(answer, Mapping) or not isinstance(answer.get("active"), bool):
            raise Unauthenticated("token introspection gave an answer without 'active'")
        return IntrospectionToken(answer)

    async def _introspection_location(self) -> str | None:
        if self._introspection_url:
            return self._introspection_url
        endpoint = self._discovered_introspection()
        if endpoint is None:
            async with self._discovery_lock:
                # Rate-limited like the key set: opaque tokens arriving while the provider
                # advertises no endpoint must not each cost a request.
                endpoint = self._discovered_introspection()
                if endpoint is None and _elapsed(
                    self._clock, self._discovery_attempted_at, self._refetch_interval
                ):
                    try:
                        await self._discover()
                    except ProviderUnavailable as error:
                        log.warning("untrusted discovery document for %s: %s", self.issuer, error)
                    endpoint = self._discovered_introspection()
        return endpoint

    def _discovered_introspection(self) -> str | None:
        endpoint = self._metadata.get("introspection_endpoint") if self._metadata else None
        return endpoint if isinstance(endpoint, str) and endpoint else None

    # -- http -------------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _get_json(self, url: str) -> Any:
        try:
            async with self._http().get(
                url, timeout=self._timeout, headers={"Accept": "application/json"}
            ) as response:
                if response.status != 200:
                    raise ProviderUnavailable(f"GET {url} answered {response.status}")
                return await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise ProviderUnavailable(f"GET {url} failed: {error!r}") from error


def _elapsed(clock: Callable[[], float], since: float | None, interval: float) -> bool:
    return since is None or clock() - since >= interval


def _has_kid(keys: KeySet, kid: object) -> bool:
    return any(key.kid == kid for key in keys.keys)
