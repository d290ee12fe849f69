"""Fixtures shared by the contract suites: `storage` runs a test once per storage adapter, and
`api_key_store` once per ApiKeyStore adapter (each storage's `api_keys`).

The "postgres" runs need FLUX_TEST_POSTGRES_DSN (see tests/contract/pg.py); without it, they
are skipped with the reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from adapters.storage.memory import MemoryStorage
from adapters.storage.sqlite import SqliteStorage
from ports.auth import ApiKeyStore
from ports.storage import Storage
from tests.contract.pg import postgres_storage

ADAPTERS = ["memory", "sqlite", "postgres"]


@pytest.fixture(params=ADAPTERS)
async def storage(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[Storage]:
    """A fresh, empty storage of each adapter."""
    if request.param == "postgres":
        async with postgres_storage() as store:
            yield store
        return
    if request.param == "memory":
        store: Storage = MemoryStorage()
    else:
        store = await SqliteStorage.open(tmp_path / "flux.db")
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def api_key_store(storage: Storage) -> ApiKeyStore:
    """A fresh, empty ApiKeyStore of each adapter: the one its storage offers."""
    return storage.api_keys
