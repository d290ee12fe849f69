"""Schema migrations of the PostgreSQL store.

`MIGRATIONS` is an ordered list; to change the schema, append a `Migration` with the next version
number (never edit one that has shipped). `migrate` runs in ONE transaction that first takes a
transaction-level advisory lock keyed by the schema: replicas that start together queue on the
lock, the first applies what is pending (DDL is transactional in PostgreSQL, so a failed migration
leaves nothing behind), and the others then find every version recorded in `schema_migrations`.

Text columns that are keys or sort orders use `COLLATE "C"`: the contract sorts by code point, as
Python and SQLite do, whatever collation the database was created with.
"""

from __future__ import annotations

import re

import asyncpg

from adapters.storage.migrations import Migration

# First half of the two-int advisory lock key: ours, so it cannot meet another application's
# locks on the same database; the second half is a hash of the schema name.
LOCK_CLASS = 0x464C5558  # "FLUX"

SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "workflows, revisions, services, executions and their events, api keys",
        """
        CREATE TABLE workflows (
            namespace TEXT COLLATE "C" NOT NULL,
            name TEXT COLLATE "C" NOT NULL,
            version INTEGER NOT NULL,
            source TEXT NOT NULL,
            source_hash TEXT NOT NULL,
            input_schema JSON,
            description TEXT NOT NULL DEFAULT '',
            created_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (namespace, name, version)
        );
        CREATE TABLE revisions (
            key TEXT PRIMARY KEY,
            value BIGINT NOT NULL
        );
        INSERT INTO revisions (key, value) VALUES ('catalog', 0), ('services', 0);
        CREATE TABLE services (
            name TEXT COLLATE "C" PRIMARY KEY,
            namespaces TEXT[] NOT NULL DEFAULT '{}',
            workflows TEXT[] NOT NULL DEFAULT '{}',
            exclusions TEXT[] NOT NULL DEFAULT '{}',
            mcp_enabled BOOLEAN NOT NULL DEFAULT FALSE,
            revision INTEGER NOT NULL DEFAULT 1,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL
        );
        CREATE TABLE executions (
            id TEXT COLLATE "C" PRIMARY KEY,
            namespace TEXT NOT NULL,
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            state TEXT NOT NULL,
            input JSONB,
            output JSONB,
            error JSONB,
            pause_name TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX executions_state ON executions (state, created_at, id);
        CREATE TABLE execution_events (
            execution_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            key TEXT NOT NULL DEFAULT '',
            value JSONB,
            at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (execution_id, seq)
        );
        CREATE TABLE api_keys (
            key_id TEXT PRIMARY KEY,
            name TEXT COLLATE "C" NOT NULL UNIQUE,
            secret_hash TEXT NOT NULL UNIQUE,
            permissions TEXT[] NOT NULL DEFAULT '{}',
            revoked BOOLEAN NOT NULL DEFAULT FALSE,
            created_at DOUBLE PRECISION NOT NULL
        );
        """,
    ),
    Migration(
        2,
        "execution leases, for worker processes",
        """
        ALTER TABLE executions ADD COLUMN lease_owner TEXT, ADD COLUMN lease_until DOUBLE PRECISION;
        CREATE INDEX executions_leasable ON executions (created_at, id)
            WHERE state IN ('CREATED', 'RUNNING');
        """,
    ),
    Migration(
        3,
        "workflow_heads (versions only grow); execution values as JSON text, kept as written "
        "(jsonb turned 1.5e300 into an integer and reordered keys)",
        """
        CREATE TABLE workflow_heads (
            namespace TEXT COLLATE "C" NOT NULL,
            name TEXT COLLATE "C" NOT NULL,
            last_version INTEGER NOT NULL,
            PRIMARY KEY (namespace, name)
        );
        INSERT INTO workflow_heads (namespace, name, last_version)
            SELECT namespace, name, MAX(version) FROM workflows GROUP BY namespace, name;
        CREATE INDEX executions_workflow ON executions (namespace, name, version)
            WHERE state IN ('CREATED', 'RUNNING', 'PAUSED');
        ALTER TABLE executions
            ALTER COLUMN input TYPE JSON USING input::json,
            ALTER COLUMN output TYPE JSON USING output::json,
            ALTER COLUMN error TYPE JSON USING error::json;
        ALTER TABLE execution_events ALTER COLUMN value TYPE JSON USING value::json;
        """,
    ),
    Migration(
        4,
        "deadlines, the starting service and callback URL of executions, listing indexes, "
        "idempotency keys, the callback outbox",
        """
        ALTER TABLE workflows ADD COLUMN timeout DOUBLE PRECISION;
        ALTER TABLE executions
            ADD COLUMN service TEXT COLLATE "C",
            ADD COLUMN deadline DOUBLE PRECISION,
            ADD COLUMN time_left DOUBLE PRECISION,
            ADD COLUMN callback_url TEXT;
        CREATE INDEX executions_newest ON executions (created_at, id);
        CREATE INDEX executions_workflow_newest ON executions (namespace, name, created_at, id);
        CREATE INDEX executions_service_newest ON executions (service, created_at, id)
            WHERE service IS NOT NULL;
        CREATE INDEX executions_state_newest ON executions (state, created_at, id);
        CREATE INDEX executions_deadline ON executions (deadline) WHERE deadline IS NOT NULL;
        CREATE TABLE idempotency_keys (
            principal TEXT COLLATE "C" NOT NULL,
            key TEXT COLLATE "C" NOT NULL,
            fingerprint TEXT NOT NULL,
            execution_id TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (principal, key)
        );
        CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
        CREATE TABLE callback_deliveries (
            id TEXT PRIMARY KEY,
            execution_id TEXT NOT NULL,
            url TEXT NOT NULL,
            payload JSON NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at DOUBLE PRECISION NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            delivered_at DOUBLE PRECISION,
            last_error TEXT,
            lease_owner TEXT,
            lease_until DOUBLE PRECISION
        );
        CREATE INDEX callback_deliveries_due ON callback_deliveries (next_at)
            WHERE delivered_at IS NULL;
        CREATE INDEX callback_deliveries_execution ON callback_deliveries (execution_id);
        """,
    ),
    Migration(
        5,
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
        6,
        "callback deliveries given up on, and the index of those still owed",
        # A delivery is owed until delivered or given up (24 h of failed attempts); only owed
        # ones are in the index the sender polls.
        """
        ALTER TABLE callback_deliveries ADD COLUMN gave_up_at DOUBLE PRECISION;
        DROP INDEX callback_deliveries_due;
        CREATE INDEX callback_deliveries_owed ON callback_deliveries (next_at)
            WHERE delivered_at IS NULL AND gave_up_at IS NULL;
        """,
    ),
    Migration(
        7,
        "executions of one namespace, newest first (GET /executions?namespace=...)",
        # Without it a namespace filter walks the newest-first index of every execution and
        # drops the other namespaces' rows: a namespace with few executions among many (or a
        # key allowed one namespace) read the whole table for a page.
        """
        CREATE INDEX executions_namespace_newest ON executions (namespace, created_at, id);
        """,
    ),
    Migration(
        8,
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
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


def check_schema_name(schema: str) -> str:
    """Schema names end up in SQL text (CREATE SCHEMA, search_path): allow plain ones only."""
    if not SCHEMA_NAME.fullmatch(schema):
        raise ValueError(
            f"invalid PostgreSQL schema name {schema!r}: use lower-case letters, digits and '_'"
        )
    return schema


async def migrate(
    conn: asyncpg.Connection,
    migrations: list[Migration] | None = None,
    *,
    schema: str | None = None,
) -> list[int]:
    """Apply the pending migrations in order; returns the versions applied by this call.

    With `schema`, the schema is created if missing and the tables go there; without it they go
    to the connection's current schema.
    """
    todo = sorted(MIGRATIONS if migrations is None else migrations, key=lambda m: m.version)
    async with conn.transaction():
        target = check_schema_name(schema) if schema else None
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext(coalesce($2::text, current_schema(), '')))",
            LOCK_CLASS,
            target,
        )
        if target:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {target}")
            await conn.execute(f"SET LOCAL search_path TO {target}")
        await conn.execute(_LEDGER)
        done = {row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        applied: list[int] = []
        for migration in todo:
            if migration.version in done:
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, description) VALUES ($1, $2)",
                migration.version,
                migration.description,
            )
            applied.append(migration.version)
        return applied
