"""The in-memory ApiKeyStore: the twin that proves the contract (tests/contract/
test_api_key_store.py), not for production use. The SQLite and PostgreSQL stores live with
their adapters (`sqlite/api_keys.py`, `postgres/api_keys.py`)."""

from __future__ import annotations

from attrs import evolve

from core.errors import AlreadyExists
from ports.auth import ApiKey


class MemoryApiKeyStore:
    def __init__(self) -> None:
        self._keys: dict[str, ApiKey] = {}
        self._hashes: dict[str, str] = {}  # secret hash -> key id

    async def add(self, key: ApiKey, secret_hash: str) -> None:
        taken = key.key_id in self._keys or secret_hash in self._hashes
        if taken or any(k.name == key.name for k in self._keys.values()):
            raise AlreadyExists(f"an API key named {key.name!r} already exists", name=key.name)
        self._keys[key.key_id] = key
        self._hashes[secret_hash] = key.key_id

    async def by_hash(self, secret_hash: str) -> ApiKey | None:
        key_id = self._hashes.get(secret_hash)
        return None if key_id is None else self._keys.get(key_id)

    async def get(self, key_id: str) -> ApiKey | None:
        return self._keys.get(key_id)

    async def list(self) -> list[ApiKey]:
        return sorted(self._keys.values(), key=lambda k: k.name)

    async def revoke(self, key_id: str) -> bool:
        key = self._keys.get(key_id)
        if key is None:
            return False
        self._keys[key_id] = evolve(key, revoked=True)
        return True

    async def delete(self, key_id: str) -> bool:
        if self._keys.pop(key_id, None) is None:
            return False
        self._hashes = {h: k for h, k in self._hashes.items() if k != key_id}
        return True
