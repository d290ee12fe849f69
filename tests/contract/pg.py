"""Helpers for running tests on PostgreSQL: each test gets a schema of its own, dropped after.

The server comes from `FLUX_TEST_POSTGRES_DSN` (`eval "$(bash .ci/postgres.sh)"` starts one).
Without it, or when it does not answer, PostgreSQL tests are skipped with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from adapters.storage.postgres import PostgresStorage

DSN_VARIABLE = "FLUX_TEST_POSTGRES_DSN"
CONNECT_TIMEOUT = 5.0

_unreachable: dict[str, str] = {}  # dsn -> why; checked once per test session


def postgres_dsn() -> str:
    """The test server's DSN, or skip the calling test with the reason."""
    dsn = os.environ.get(DSN_VARIABLE, "").strip()
    if not dsn:
        pytest.skip(f'{DSN_VARIABLE} is not set (start a server: eval "$(bash .ci/postgres.sh)")')
    if dsn in _unreachable:
        pytest.skip(_unreachable[dsn])
    return dsn


async def _admin(dsn: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        _unreachable[dsn] = f"PostgreSQL at {DSN_VARIABLE} is unreachable: {exc!r}"
        pytest.skip(_unreachable[dsn])


@asynccontextmanager
async def fresh_schema() -> AsyncIterator[tuple[str, str]]:
    """(dsn, schema): a schema name nobody uses yet; it and all it holds are dropped after."""
    dsn = postgres_dsn()
    admin = await _admin(dsn)
    schema = f"flux_test_{uuid.uuid4().hex[:16]}"
    try:
        yield dsn, schema
    finally:
        try:
            await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await admin.close()


@asynccontextmanager
async def postgres_storage(**options) -> AsyncIterator[PostgresStorage]:
    """A fresh, empty PostgresStorage on a schema of its own."""
    async with replicas(1, **options) as (storage,):
        yield storage


@asynccontextmanager
async def replicas(count: int, **options) -> AsyncIterator[tuple[PostgresStorage, ...]]:
    """`count` storages on one fresh schema, as that many server replicas would be."""
    async with fresh_schema() as (dsn, schema):
        opened: list[PostgresStorage] = []
        try:
            for _ in range(count):
                opened.append(await PostgresStorage.open(dsn, schema=schema, **options))
            yield tuple(opened)
        finally:
            for storage in opened:
                await storage.close()
