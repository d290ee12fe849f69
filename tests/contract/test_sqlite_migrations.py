"""Schema migrations: an old database file is brought up to date on open, its data intact."""

from __future__ import annotations

import sqlite3

import pytest
from attrs import evolve

from adapters.storage.migrations import MIGRATIONS, Migration, migrate, statements
from adapters.storage.sqlite import SqliteStorage
from core.model import ExecutionState, ServiceDefinition, WorkflowRef


def build_version_1(path) -> None:
    """A file as migration 1 alone left it, written by hand (no mcp_enabled on services)."""
    db = sqlite3.connect(path)
    try:
        db.executescript(
            """
            CREATE TABLE schema_migrations (
                version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at REAL NOT NULL
            );
            INSERT INTO schema_migrations VALUES (1, 'initial', 0);
            CREATE TABLE workflows (
                namespace TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
                source TEXT NOT NULL, source_hash TEXT NOT NULL, input_schema TEXT,
                description TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL,
                PRIMARY KEY (namespace, name, version)
            );
            CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
            INSERT INTO meta VALUES ('catalog_revision', 4), ('services_revision', 7);
            CREATE TABLE services (
                name TEXT PRIMARY KEY, namespaces TEXT NOT NULL DEFAULT '[]',
                workflows TEXT NOT NULL DEFAULT '[]', exclusions TEXT NOT NULL DEFAULT '[]',
                revision INTEGER NOT NULL DEFAULT 1, created_at REAL NOT NULL,
                updated_at REAL NOT NULL
            );
            CREATE TABLE executions (
                id TEXT PRIMARY KEY, namespace TEXT NOT NULL, name TEXT NOT NULL,
                version INTEGER NOT NULL, state TEXT NOT NULL, input TEXT, output TEXT,
                error TEXT, pause_name TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL
            );
            CREATE INDEX executions_state ON executions (state);
            CREATE TABLE execution_events (
                execution_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,
                key TEXT NOT NULL DEFAULT '', value TEXT, at REAL NOT NULL,
                PRIMARY KEY (execution_id, seq)
            );
            INSERT INTO workflows VALUES
                ('billing', 'invoice', 1, 'src', 'h1', '{"type": "object"}', 'Invoices.', 1.0);
            INSERT INTO services VALUES
                ('billing', '["billing"]', '["shared/audit"]', '[]', 3, 1.0, 2.0);
            INSERT INTO executions VALUES
                ('e1', 'billing', 'invoice', 1, 'PAUSED', '{"n": 1}', '"ask"', NULL, 'approve',
                 1.0, 2.0);
            """
        )
        db.commit()
    finally:
        db.close()


def columns(path, table: str) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
    finally:
        db.close()


def ledger(path) -> list[int]:
    db = sqlite3.connect(path)
    try:
        return [row[0] for row in db.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    finally:
        db.close()


async def test_old_file_is_migrated_and_keeps_its_data(tmp_path):
    path = tmp_path / "old.db"
    build_version_1(path)
    assert "mcp_enabled" not in columns(path, "services")

    storage = await SqliteStorage.open(path)
    try:
        assert await storage.services.get("billing") == ServiceDefinition(
            name="billing",
            namespaces=("billing",),
            workflows=(WorkflowRef("shared", "audit"),),
            mcp_enabled=False,
            revision=3,
        )
        assert await storage.services.revision() == 7
        snapshot = await storage.catalog.snapshot()
        assert snapshot.revision == 4
        [info] = snapshot.workflows
        assert (str(info.ref), info.version, info.input_schema, info.description) == (
            "billing/invoice",
            1,
            {"type": "object"},
            "Invoices.",
        )
        paused = await storage.executions.get("e1")
        assert (paused.state, paused.input, paused.output, paused.pause_name) == (
            ExecutionState.PAUSED,
            {"n": 1},
            "ask",
            "approve",
        )
        # The new column is writable through the port.
        await storage.services.update("billing", lambda s: evolve(s, mcp_enabled=True))
        assert (await storage.services.get("billing")).mcp_enabled is True
    finally:
        await storage.close()

    assert "mcp_enabled" in columns(path, "services")
    assert ledger(path) == sorted(m.version for m in MIGRATIONS)
    assert ledger(path)[:2] == [1, 2]


async def test_opening_twice_applies_nothing_again(tmp_path):
    path = tmp_path / "new.db"
    first = await SqliteStorage.open(path)
    await first.services.create(ServiceDefinition("billing", mcp_enabled=True))
    await first.close()
    applied = ledger(path)
    assert applied == sorted(m.version for m in MIGRATIONS)

    second = await SqliteStorage.open(path)
    try:
        assert (await second.services.get("billing")).mcp_enabled is True
    finally:
        await second.close()
    assert ledger(path) == applied


async def test_new_file_uses_wal(tmp_path):
    path = tmp_path / "wal.db"
    storage = await SqliteStorage.open(path)
    await storage.close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def test_statement_splitting_keeps_trigger_bodies_whole():
    sql = """
        CREATE TABLE t (a TEXT);
        CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN UPDATE t SET a = 'x;y'; END;
        INSERT INTO t VALUES ('a;b')
    """
    found = statements(sql)
    assert len(found) == 3
    assert found[1].startswith("CREATE TRIGGER") and found[1].endswith("END;")
    assert "'a;b'" in found[2]


def test_failed_migration_leaves_no_trace(tmp_path):
    broken = [
        Migration(1, "one", "CREATE TABLE a (x INTEGER)"),
        Migration(2, "half done", "CREATE TABLE b (x INTEGER); INSERT INTO nowhere VALUES (1)"),
    ]
    db = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError):
            migrate(db, broken)
        found = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        tables = {row[0] for row in found}
        assert "a" in tables and "b" not in tables
        assert migrate(db, broken[:1]) == []
    finally:
        db.close()
    assert ledger(tmp_path / "x.db") == [1]
