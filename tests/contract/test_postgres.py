"""PostgreSQL-only behaviour: several replicas on one database, migrations, sort order, API keys,
and the URL-based factory. Needs FLUX_TEST_POSTGRES_DSN (see tests/contract/pg.py)."""

from __future__ import annotations

import asyncio
import hashlib

import asyncpg
import pytest
from attrs import evolve

from adapters.storage.factory import open_storage, postgres_dsn
from adapters.storage.migrations import Migration
from adapters.storage.pg_migrations import MIGRATIONS, migrate
from adapters.storage.postgres import PostgresStorage
from adapters.storage.sqlite import SqliteStorage
from core.errors import AlreadyExists
from core.model import ServiceDefinition, WorkflowRef
from ports.auth import ApiKey
from ports.catalog import NewWorkflow
from tests.contract.pg import fresh_schema, postgres_storage, replicas

BOUND = 20  # seconds: no test here may hang longer


def wf(ref: str, source: str = "def w(): pass", schema: dict | None = None) -> NewWorkflow:
    return NewWorkflow(
        ref=WorkflowRef.parse(ref),
        source=source,
        source_hash=hashlib.sha256(source.encode()).hexdigest(),
        input_schema=schema,
        description="",
    )


async def ledger(dsn: str, schema: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(f"SELECT version FROM {schema}.schema_migrations ORDER BY version")
        return [row[0] for row in rows]
    finally:
        await conn.close()


# --- migrations ----------------------------------------------------------------------------


async def test_replicas_opening_together_apply_migrations_once():
    async with fresh_schema() as (dsn, schema):
        opened = await asyncio.wait_for(
            asyncio.gather(
                *(PostgresStorage.open(dsn, schema=schema, max_size=2) for _ in range(4))
            ),
            BOUND,
        )
        try:
            assert await ledger(dsn, schema) == [m.version for m in MIGRATIONS]
            await opened[0].services.create(ServiceDefinition("billing"))
            assert [await s.services.get("billing") for s in opened] == [
                ServiceDefinition("billing")
            ] * 4
        finally:
            for storage in opened:
                await storage.close()


async def test_pending_migration_is_applied_on_open_and_only_then():
    extra = Migration(len(MIGRATIONS) + 1, "test column", "ALTER TABLE services ADD note TEXT")
    async with fresh_schema() as (dsn, schema):
        conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
        try:
            assert await migrate(conn, schema=schema) == [m.version for m in MIGRATIONS]
            assert await migrate(conn, schema=schema) == []
            assert await migrate(conn, [*MIGRATIONS, extra], schema=schema) == [extra.version]
            assert await migrate(conn, [*MIGRATIONS, extra], schema=schema) == []
            assert await conn.fetchval(
                "SELECT count(*) FROM information_schema.columns "
                "WHERE table_schema = $1 AND table_name = 'services' AND column_name = 'note'",
                schema,
            )
        finally:
            await conn.close()
        assert await ledger(dsn, schema) == [*(m.version for m in MIGRATIONS), extra.version]


async def test_failed_migration_leaves_nothing_behind():
    broken = Migration(len(MIGRATIONS) + 1, "broken", "ALTER TABLE nowhere ADD x INT")
    async with fresh_schema() as (dsn, schema):
        conn = await asyncpg.connect(dsn)
        try:
            with pytest.raises(asyncpg.UndefinedTableError):
                await migrate(conn, [*MIGRATIONS, broken], schema=schema)
            tables = await conn.fetchval(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1", schema
            )
            assert tables == 0
        finally:
            await conn.close()
        # The next open starts again from the beginning and succeeds.
        storage = await PostgresStorage.open(dsn, schema=schema)
        await storage.close()
        assert await ledger(dsn, schema) == [m.version for m in MIGRATIONS]


async def test_invalid_schema_name_is_refused_before_any_sql():
    async with fresh_schema() as (dsn, _):
        with pytest.raises(ValueError, match="schema name"):
            await PostgresStorage.open(dsn, schema="x; DROP TABLE y")


# --- two replicas on one database ----------------------------------------------------------


async def test_a_replica_sees_the_other_ones_writes_on_its_next_call():
    async with replicas(2) as (one, two):
        assert (await two.catalog.snapshot()).workflows == ()
        await one.catalog.register([wf("a/x")])
        assert [str(i.ref) for i in (await two.catalog.snapshot()).workflows] == ["a/x"]
        assert await two.catalog.revision() == await one.catalog.revision()

        await two.services.create(ServiceDefinition("billing"))
        with pytest.raises(AlreadyExists):
            await one.services.create(ServiceDefinition("billing"))
        revision = await two.services.revision()
        await one.services.update("billing", lambda s: evolve(s, namespaces=("a",)))
        assert await two.services.revision() == revision + 1
        assert (await two.services.get("billing")).namespaces == ("a",)

        await two.catalog.delete(WorkflowRef("a", "x"))
        assert (await one.catalog.snapshot()).workflows == ()


async def test_concurrent_updates_from_two_replicas_never_lose_a_change():
    async with replicas(2, max_size=4) as (one, two):
        await one.services.create(ServiceDefinition("billing"))
        names = [f"ns{i:02d}" for i in range(40)]

        def adding(namespace: str):
            return lambda s: evolve(s, namespaces=tuple(sorted({*s.namespaces, namespace})))

        await asyncio.wait_for(
            asyncio.gather(
                *(
                    (one, two)[i % 2].services.update("billing", adding(n))
                    for i, n in enumerate(names)
                )
            ),
            BOUND,
        )
        final = await two.services.get("billing")
        assert final.namespaces == tuple(names)
        assert final.revision == 41


async def test_concurrent_registers_from_two_replicas_get_distinct_versions():
    async with replicas(2) as (one, two):
        results = await asyncio.wait_for(
            asyncio.gather(
                *((one, two)[i % 2].catalog.register([wf("a/x", f"source {i}")]) for i in range(10))
            ),
            BOUND,
        )
        versions = sorted(r.info.version for [r] in results)
        assert versions == list(range(1, 11))
        assert len(await one.catalog.versions(WorkflowRef("a", "x"))) == 10


# --- sort order, JSON, API keys ------------------------------------------------------------


async def test_sort_orders_are_by_code_point_whatever_the_database_collation():
    # The CI cluster uses an ICU collation, which would put "a_c" before "ab" and "Zeta" last.
    async with postgres_storage() as storage:
        names = ["ab", "a-b", "a_c", "a0", "b"]
        for name in names:
            await storage.services.create(ServiceDefinition(name))
        assert [s.name for s in await storage.services.list()] == sorted(names)

        refs = ["a/alpha", "a/Zeta", "a/_x", "a/b_c", "a/bc", "a_b/y", "a-b/x", "ab/z"]
        await storage.catalog.register([wf(ref) for ref in refs])
        expected = sorted(WorkflowRef.parse(ref) for ref in refs)
        assert [i.ref for i in (await storage.catalog.snapshot()).workflows] == expected
        assert [i.ref for i in await storage.catalog.list("a")] == [
            r for r in expected if r.namespace == "a"
        ]


async def test_input_schema_keeps_its_property_order():
    schema = {"type": "object", "properties": {"zeta": {"type": "string"}, "a": {}}}
    async with replicas(2) as (one, two):
        await one.catalog.register([wf("a/x", schema=schema)])
        stored = (await two.catalog.get(WorkflowRef("a", "x"))).info.input_schema
        assert stored == schema
        assert list(stored) == ["type", "properties"]
        assert list(stored["properties"]) == ["zeta", "a"]


async def test_api_key_store_on_the_same_database():
    async with replicas(2) as (one, two):
        key = ApiKey("k1", "ci", frozenset({"admin", "workflow:*"}), created_at=1.5)
        await one.api_keys.add(key, "hash-1")
        assert await two.api_keys.by_hash("hash-1") == key
        assert await two.api_keys.get("k1") == key
        with pytest.raises(AlreadyExists):
            await two.api_keys.add(ApiKey("k2", "ci"), "hash-2")
        with pytest.raises(AlreadyExists):
            await two.api_keys.add(ApiKey("k3", "other"), "hash-1")
        await one.api_keys.add(ApiKey("k0", "alpha"), "hash-0")
        assert [k.name for k in await two.api_keys.list()] == ["alpha", "ci"]
        assert await two.api_keys.revoke("k1") is True
        assert (await one.api_keys.by_hash("hash-1")).revoked is True
        assert await two.api_keys.revoke("nope") is False
        assert await one.api_keys.delete("k1") is True
        assert await one.api_keys.delete("k1") is False
        assert await two.api_keys.get("k1") is None


async def test_health_is_unreachable_after_close():
    async with postgres_storage() as storage:
        assert await storage.health() == "ok"
    assert await storage.health() == "unreachable"


# --- factory -------------------------------------------------------------------------------


async def test_factory_opens_postgres_with_the_schema_of_the_url():
    async with fresh_schema() as (dsn, schema):
        separator = "&" if "?" in dsn else "?"
        storage = await open_storage(f"{dsn}{separator}schema={schema}")
        try:
            assert isinstance(storage, PostgresStorage)
            await storage.services.create(ServiceDefinition("billing"))
        finally:
            await storage.close()
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval(f"SELECT name FROM {schema}.services") == "billing"
        finally:
            await conn.close()


@pytest.mark.parametrize("form", ["sqlite:///{}", "{}"])
async def test_factory_opens_sqlite_and_makes_its_directory(tmp_path, form):
    path = tmp_path / "new" / "flux.db"
    storage = await open_storage(form.format(path))
    try:
        assert isinstance(storage, SqliteStorage)
        assert await storage.health() == "ok"
    finally:
        await storage.close()
    assert path.exists()


async def test_factory_refuses_other_databases_without_echoing_the_url():
    with pytest.raises(ValueError, match="'mysql'") as raised:
        await open_storage("mysql://user:secret@host/db")
    assert "secret" not in str(raised.value)


async def test_factory_refuses_in_memory_sqlite():
    # The SQLite adapter uses two connections; with :memory: they would be two databases.
    for url in (":memory:", "sqlite://"):
        with pytest.raises(ValueError, match="in-memory"):
            await open_storage(url)


def test_postgres_urls_in_every_spelling_give_one_dsn():
    expected = ("postgresql://u:p@db:5432/flux?sslmode=require", "flux_prod")
    for scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        url = f"{scheme}://u:p@db:5432/flux?schema=flux_prod&sslmode=require"
        assert postgres_dsn(url) == expected
    assert postgres_dsn("postgresql://db/flux") == ("postgresql://db/flux", None)
    assert postgres_dsn("sqlite:///flux.db") is None
