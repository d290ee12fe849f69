"""The migrations that make versions only grow (SQLite 5, PostgreSQL 3) on databases written
before them: the highest version of each ref is taken from its rows, and execution values
written as jsonb read back the same."""

from __future__ import annotations

import asyncpg
from attrs import evolve

from adapters.storage.pg_migrations import MIGRATIONS as PG_MIGRATIONS
from adapters.storage.pg_migrations import migrate as pg_migrate
from adapters.storage.postgres import PostgresStorage
from adapters.storage.sqlite import SqliteStorage
from core.model import ExecutionState, WorkflowRef
from tests.contract.pg import fresh_schema
from tests.contract.test_sqlite_migrations import build_version_1, ledger
from tests.contract.test_storage import execution, wf

REF = WorkflowRef("billing", "invoice")


async def test_sqlite_old_file_keeps_counting_from_its_highest_version(tmp_path):
    path = tmp_path / "old.db"
    build_version_1(path)  # holds billing/invoice v1
    storage = await SqliteStorage.open(path)
    try:
        assert await storage.catalog.delete(REF) == 1
        [again] = await storage.catalog.register([wf("billing/invoice", "new source")])
        assert again.info.version == 2
        # The execution the old file holds is PAUSED on v1: counted as unfinished.
        assert await storage.workflow_executions.unfinished(REF) == ["e1"]
        assert await storage.health() == "ok"
    finally:
        await storage.close()
    assert 5 in ledger(path)


async def test_postgres_old_schema_keeps_counting_and_keeps_its_values():
    async with fresh_schema() as (dsn, schema):
        conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
        try:
            before = [m for m in PG_MIGRATIONS if m.version < 3]
            await pg_migrate(conn, before, schema=schema)
            await conn.execute(
                "INSERT INTO workflows (namespace, name, version, source, source_hash, "
                "description, created_at) VALUES ('billing', 'invoice', 4, 's', 'h', '', 1)"
            )
            await conn.execute(
                "INSERT INTO executions (id, namespace, name, version, state, input, "
                "created_at, updated_at) VALUES ('e1', 'billing', 'invoice', 4, 'PAUSED', "
                '\'{"b": 1, "a": [2]}\'::jsonb, 1, 1)'
            )
        finally:
            await conn.close()

        storage = await PostgresStorage.open(dsn, schema=schema)
        try:
            assert await storage.catalog.delete(REF) == 1
            [again] = await storage.catalog.register([wf("billing/invoice", "new")])
            assert again.info.version == 5
            assert (await storage.executions.get("e1")).input == {"a": [2], "b": 1}
            assert await storage.workflow_executions.unfinished(REF, 4) == ["e1"]
            value = {"z": 1.5e300, "a": 2**70}
            await storage.executions.create(evolve(execution("e2"), input=value))
            stored = await storage.executions.get("e2")
            assert stored.input == value and list(stored.input) == ["z", "a"]
            assert type(stored.input["z"]) is float
            assert stored.state == ExecutionState.CREATED
        finally:
            await storage.close()
