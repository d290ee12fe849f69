"""Contract of `ports.auth.ApiKeyStore`, run against every adapter (see conftest.py)."""

from __future__ import annotations

import asyncio

import pytest

from adapters.storage.sqlite import SqliteStorage
from core.errors import AlreadyExists
from ports.auth import ApiKey, ApiKeyStore


@pytest.fixture
def store(api_key_store: ApiKeyStore) -> ApiKeyStore:
    return api_key_store


def key(key_id: str = "k1", name: str = "ci", *permissions: str) -> ApiKey:
    return ApiKey(key_id, name, frozenset(permissions or ("admin",)), created_at=12.5)


async def test_added_key_is_found_by_hash_and_id(store):
    await store.add(key("k1", "ci", "admin", "workflow:*"), "hash-1")
    found = await store.by_hash("hash-1")
    assert found == key("k1", "ci", "admin", "workflow:*")
    assert await store.get("k1") == found
    assert await store.by_hash("hash-2") is None
    assert await store.get("nope") is None


async def test_duplicate_name_or_hash_is_refused(store):
    await store.add(key("k1", "ci"), "hash-1")
    with pytest.raises(AlreadyExists):
        await store.add(key("k2", "ci"), "hash-2")
    with pytest.raises(AlreadyExists):
        await store.add(key("k3", "other"), "hash-1")
    assert [k.key_id for k in await store.list()] == ["k1"]


async def test_list_is_sorted_by_name(store):
    for key_id, name in [("a", "zeta"), ("b", "alpha"), ("c", "mid")]:
        await store.add(key(key_id, name), f"hash-{key_id}")
    assert [k.name for k in await store.list()] == ["alpha", "mid", "zeta"]


async def test_revoke_marks_the_key_and_keeps_it(store):
    await store.add(key("k1"), "hash-1")
    assert await store.revoke("k1") is True
    assert await store.revoke("k1") is True
    assert (await store.by_hash("hash-1")).revoked is True
    assert await store.revoke("missing") is False


async def test_delete_removes_the_key(store):
    await store.add(key("k1"), "hash-1")
    assert await store.delete("k1") is True
    assert await store.by_hash("hash-1") is None
    assert await store.delete("k1") is False
    await store.add(key("k2", "ci"), "hash-1")  # name and hash are free again


async def test_concurrent_adds_all_land(store):
    await asyncio.gather(*(store.add(key(f"k{n}", f"key-{n}"), f"h{n}") for n in range(20)))
    assert len(await store.list()) == 20


async def test_sqlite_keys_survive_a_reopen(tmp_path):
    storage = await SqliteStorage.open(tmp_path / "flux.db")
    try:
        store = storage.api_keys
        await store.add(key("k1", "ci", "admin"), "hash-1")
        await store.revoke("k1")
    finally:
        await storage.close()
    storage = await SqliteStorage.open(tmp_path / "flux.db")
    try:
        found = await storage.api_keys.by_hash("hash-1")
    finally:
        await storage.close()
    assert found == ApiKey("k1", "ci", frozenset({"admin"}), revoked=True, created_at=12.5)
