"""Fixtures shared by the contract suites: `storage` runs a test once per storage adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from adapters.storage.memory import MemoryStorage
from adapters.storage.sqlite import SqliteStorage


@pytest.fixture(params=["memory", "sqlite"])
async def storage(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[object]:
    """A fresh, empty storage with `.catalog`, `.services` and `.executions`."""
    if request.param == "memory":
        store: MemoryStorage | SqliteStorage = MemoryStorage()
    else:
        store = await SqliteStorage.open(tmp_path / "flux.db")
    try:
        yield store
    finally:
        await store.close()
