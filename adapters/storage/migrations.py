"""Schema migrations of the SQLite store.

`MIGRATIONS` is an ordered list; to change the schema, append a `Migration` with the next version
number (never edit one that has shipped). `migrate` applies each pending migration in its own
`BEGIN IMMEDIATE` transaction together with its row in `schema_migrations`, and re-checks inside
that transaction, so two processes opening the same new file apply each migration exactly once.
"""

from __future__ import annotations

import sqlite3
import time

from attrs import frozen


@frozen
class Migration:
    version: int
    description: str
    sql: str  # one or more statements separated by ';'


MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "workflows, meta revisions, services, executions and their events",
        """
        CREATE TABLE workflows (
            namespace TEXT NOT NULL,
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            source TEXT NOT NULL,
            source_hash TEXT NOT NULL,
            input_schema TEXT,
            description TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            PRIMARY KEY (namespace, name, version)
        );
        CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value INTEGER NOT NULL
        );
        INSERT INTO meta (key, value) VALUES ('catalog_revision', 0), ('services_revision', 0);
        CREATE TABLE services (
            name TEXT PRIMARY KEY,
            namespaces TEXT NOT NULL DEFAULT '[]',
            workflows TEXT NOT NULL DEFAULT '[]',
            exclusions TEXT NOT NULL DEFAULT '[]',
            revision INTEGER NOT NULL DEFAULT 1,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE TABLE executions (
            id TEXT PRIMARY KEY,
            namespace TEXT NOT NULL,
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            state TEXT NOT NULL,
            input TEXT,
            output TEXT,
            error TEXT,
            pause_name TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX executions_state ON executions (state);
        CREATE TABLE execution_events (
            execution_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            key TEXT NOT NULL DEFAULT '',
            value TEXT,
            at REAL NOT NULL,
            PRIMARY KEY (execution_id, seq)
        );
        """,
    ),
    Migration(
        2,
        "services.mcp_enabled",
        "ALTER TABLE services ADD COLUMN mcp_enabled INTEGER NOT NULL DEFAULT 0",
    ),
    Migration(
        3,
        "api_keys (hashed secrets only)",
        """
        CREATE TABLE api_keys (
            key_id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            secret_hash TEXT NOT NULL UNIQUE,
            permissions TEXT NOT NULL DEFAULT '[]',
            revoked INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL
        );
        """,
    ),
    Migration(
        4,
        "execution leases, for worker processes",
        """
        ALTER TABLE executions ADD COLUMN lease_owner TEXT;
        ALTER TABLE executions ADD COLUMN lease_until REAL;
        """,
    ),
    Migration(
        5,
        "workflow_heads (versions only grow), health_probe (the /health write probe)",
        """
        CREATE TABLE workflow_heads (
            namespace TEXT NOT NULL,
            name TEXT NOT NULL,
            last_version INTEGER NOT NULL,
            PRIMARY KEY (namespace, name)
        );
        INSERT INTO workflow_heads (namespace, name, last_version)
            SELECT namespace, name, MAX(version) FROM workflows GROUP BY namespace, name;
        CREATE INDEX executions_workflow ON executions (namespace, name, version, state);
        CREATE TABLE health_probe (id INTEGER PRIMARY KEY CHECK (id = 1), at REAL NOT NULL);
        INSERT INTO health_probe (id, at) VALUES (1, 0);
        """,
    ),
    Migration(
        6,
        "deadlines, the starting service and callback URL of executions, listing indexes, "
        "idempotency keys, the callback outbox",
        """
        ALTER TABLE workflows ADD COLUMN timeout REAL;
        ALTER TABLE executions ADD COLUMN service TEXT;
        ALTER TABLE executions ADD COLUMN deadline REAL;
        ALTER TABLE executions ADD COLUMN time_left REAL;
        ALTER TABLE executions ADD COLUMN callback_url TEXT;
        CREATE INDEX executions_newest ON executions (created_at, id);
        CREATE INDEX executions_workflow_newest ON executions (namespace, name, created_at, id);
        CREATE INDEX executions_service_newest ON executions (service, created_at, id)
            WHERE service IS NOT NULL;
        CREATE INDEX executions_state_newest ON executions (state, created_at, id);
        CREATE INDEX executions_deadline ON executions (deadline) WHERE deadline IS NOT NULL;
        CREATE TABLE idempotency_keys (
            principal TEXT NOT NULL,
            key TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            execution_id TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (principal, key)
        );
        CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
        CREATE TABLE callback_deliveries (
            id TEXT PRIMARY KEY,
            execution_id TEXT NOT NULL,
            url TEXT NOT NULL,
            payload TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at REAL NOT NULL,
            created_at REAL NOT NULL,
            delivered_at REAL,
            last_error TEXT,
            lease_owner TEXT,
            lease_until REAL
        );
        CREATE INDEX callback_deliveries_due ON callback_deliveries (next_at)
            WHERE delivered_at IS NULL;
        CREATE INDEX callback_deliveries_execution ON callback_deliveries (execution_id);
        """,
    ),
    Migration(
        7,
        "finished executions by age, and idempotency keys by execution, for the retention purge",
        # Partial: only finished rows are in it, so saves of running executions never touch
        # it, and a purge finds its oldest candidates without reading every finished row. The
        # second lets the purge skip an execution that a live idempotency key still names.
        """
        CREATE INDEX executions_finished_age ON executions (updated_at)
            WHERE state IN ('COMPLETED', 'FAILED', 'CANCELLED');
        CREATE INDEX idempotency_keys_execution ON idempotency_keys (execution_id);
        """,
    ),
    Migration(
        8,
        "callback deliveries given up on, and the index of those still owed",
        # A delivery is owed until delivered or given up (24 h of failed attempts); only owed
        # ones are in the index the sender polls.
        """
        ALTER TABLE callback_deliveries ADD COLUMN gave_up_at REAL;
        DROP INDEX callback_deliveries_due;
        CREATE INDEX callback_deliveries_owed ON callback_deliveries (next_at)
            WHERE delivered_at IS NULL AND gave_up_at IS NULL;
        """,
    ),
    Migration(
        9,
        "executions of one namespace, newest first (GET /executions?namespace=...)",
        # Without it a namespace filter walks the newest-first index of every execution and
        # drops the other namespaces' rows: a namespace with few executions among many (or a
        # key allowed one namespace) read the whole table for a page.
        """
        CREATE INDEX executions_namespace_newest ON executions (namespace, created_at, id);
        """,
    ),
    Migration(
        10,
        "the deadline index holds unfinished executions only",
        # A finished execution keeps the deadline it had: with every finished one in the index,
        # the deadline sweeper's look (each second) walked every execution finished over an
        # execution_timeout ago. The condition is spelled as `overdue` spells it.
        """
        DROP INDEX executions_deadline;
        CREATE INDEX executions_deadline ON executions (deadline)
            WHERE deadline IS NOT NULL AND state IN ('CREATED', 'RUNNING', 'PAUSED');
        """,
    ),
]

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at REAL NOT NULL
)
"""


def statements(sql: str) -> list[str]:
    """Split a script into statements; a ';' inside a trigger body or a string stays put."""
    found: list[str] = []
    pending = ""
    for piece in sql.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\r\n;"):
                found.append(pending.strip())
            pending = ""
    if pending.strip(" \t\r\n;"):
        found.append(pending.strip())
    return found


def applied_versions(db: sqlite3.Connection) -> set[int]:
    return {row[0] for row in db.execute("SELECT version FROM schema_migrations").fetchall()}


def migrate(db: sqlite3.Connection, migrations: list[Migration] | None = None) -> list[int]:
    """Apply the pending migrations in order; returns the versions applied by this call.

    `db` must be in autocommit mode (isolation_level=None) so the transactions here are ours.
    This blocks on the file's write lock: call it on the connection's own thread, never on the
    event loop (the SQLite adapter runs it as its writer connection opens).
    """
    todo = sorted(MIGRATIONS if migrations is None else migrations, key=lambda m: m.version)
    db.execute(_LEDGER)
    done = applied_versions(db)
    applied: list[int] = []
    for migration in todo:
        if migration.version in done:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have applied it while we waited for the write lock.
            if migration.version not in applied_versions(db):
                for statement in statements(migration.sql):
                    db.execute(statement)
                db.execute(
                    "INSERT INTO schema_migrations (version, description, applied_at) "
                    "VALUES (?, ?, ?)",
                    (migration.version, migration.description, time.time()),
                )
                applied.append(migration.version)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # some errors end the transaction themselves
                db.execute("ROLLBACK")
            raise
    return applied
