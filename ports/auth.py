"""Ports of authentication. Every ApiKeyStore adapter passes the contract suite in tests/contract."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from attrs import field, frozen

from core.permissions import Principal


def _permissions(values: Iterable[str]) -> frozenset[str]:
    return frozenset(values)


@frozen
class ApiKey:
    """A stored API key, without its secret: only the secret's hash is ever kept."""

    key_id: str
    name: str
    permissions: frozenset[str] = field(converter=_permissions, factory=frozenset)
    revoked: bool = False
    created_at: float = 0.0


class ApiKeyStore(Protocol):
    async def add(self, key: ApiKey, secret_hash: str) -> None:
        """Store a new key; raises `core.errors.AlreadyExists` when its name or id is taken."""

    async def by_hash(self, secret_hash: str) -> ApiKey | None:
        """The key whose secret hashes to `secret_hash` (revoked ones included)."""

    async def get(self, key_id: str) -> ApiKey | None: ...

    async def list(self) -> list[ApiKey]:
        """All keys, revoked ones included, sorted by name."""

    async def revoke(self, key_id: str) -> bool:
        """Mark a key revoked; False when there is no such key. Revoking twice is fine."""

    async def delete(self, key_id: str) -> bool: ...


class Authenticate(Protocol):
    async def authenticate(self, authorization: str | None) -> Principal:
        """The caller an `Authorization` header names (everyone when auth is off); raises
        `core.errors.Unauthenticated` for missing or bad credentials."""
