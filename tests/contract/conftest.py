"""Fixtures shared by the contract suites: `storage` runs a test once per storage adapter.

The "postgres" run needs FLUX_TEST_POSTGRES_DSN (see tests/contract/pg.py); without it, it is
skipped with the reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from adapters.storage.memory import MemoryStorage
from adapters.storage.sqlite import SqliteStorage
from tests.contract.pg import postgres_storage


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def storage(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[object]:
    """A fresh, empty storage with `.catalog`, `.services` and `.executions`."""
    if request.param == "postgres":
        async with postgres_storage() as store:
            yield store
        return
    if request.param == "memory":
        store: MemoryStorage | SqliteStorage = MemoryStorage()
    else:
        store = await SqliteStorage.open(tmp_path / "flux.db")
    try:
        yield store
    finally:
        await store.close()
