"""API keys: created with a random secret that is shown once and stored only as a hash.

SHA-256 without salt or stretching is enough here: the secret is 256 random bits from
`secrets`, so there is no dictionary to attack and nothing for a slow hash to protect; a fast,
deterministic hash also lets a key be found by an indexed lookup instead of a scan.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Iterable

from attrs import frozen

from core.errors import InvalidRequest, NotFound, Unauthenticated
from core.permissions import Principal, validate_permission
from ports.auth import ApiKey, ApiKeyStore

PREFIX = "flux_"
MAX_NAME = 100


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_api_key(token: str) -> bool:
    """Our keys carry a prefix and no dots, so they never pass for a JWT (which has two)."""
    return token.startswith(PREFIX) and "." not in token


@frozen
class CreatedKey:
    """A new key with its secret: the only moment the secret exists outside the caller."""

    key: ApiKey
    secret: str


class ApiKeys:
    """Create, verify, list and revoke API keys over an `ApiKeyStore`."""

    def __init__(self, store: ApiKeyStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock

    async def create(self, name: str, permissions: Iterable[str]) -> CreatedKey:
        name = name.strip() if isinstance(name, str) else ""
        if not name or len(name) > MAX_NAME:
            raise InvalidRequest(f"an API key needs a name of 1-{MAX_NAME} characters")
        if isinstance(permissions, str):
            permissions = [permissions]
        granted = frozenset(validate_permission(p) for p in permissions)
        secret = PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            key_id=secrets.token_hex(8),
            name=name,
            permissions=granted,
            created_at=self._clock(),
        )
        await self.store.add(key, hash_secret(secret))
        return CreatedKey(key=key, secret=secret)

    async def verify(self, secret: str) -> Principal:
        """The principal of a presented key; `Unauthenticated` when unknown or revoked."""
        key = await self.store.by_hash(hash_secret(secret))
        if key is None:
            raise Unauthenticated("unknown API key")
        if key.revoked:
            raise Unauthenticated("API key has been revoked")
        return Principal(subject=f"api-key:{key.name}", permissions=key.permissions, via="api_key")

    async def list(self) -> list[ApiKey]:
        return await self.store.list()

    async def find(self, key_id_or_name: str) -> ApiKey:
        key = await self.store.get(key_id_or_name)
        if key is None:
            key = next((k for k in await self.store.list() if k.name == key_id_or_name), None)
        if key is None:
            raise NotFound(f"no API key {key_id_or_name!r}", key=key_id_or_name)
        return key

    async def revoke(self, key_id_or_name: str) -> ApiKey:
        key = await self.find(key_id_or_name)
        await self.store.revoke(key.key_id)
        return await self.find(key.key_id)
