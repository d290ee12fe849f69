"""PostgreSQL storage (asyncpg): the storage ports for servers on more than one machine.

One module per concern: `catalog`, `services` (with the revisions), `executions` (the log),
`leases`, `api_keys`, and `storage`, which opens and closes the pool they share. `rows`
converts between core values and rows, `sql` holds the statements the stores share; the
signals are `adapters/storage/pg_signals.py`, the schema `adapters/storage/pg_migrations.py`.
"""

from adapters.storage.postgres.storage import PostgresStorage

__all__ = ["PostgresStorage"]
