"""The PostgreSQL storage as a whole: it opens the connection pool (and migrates), hands it to
the stores of each port, and closes it.

Every replica opens its own pool on the same database; the database is the only shared state,
so nothing here assumes it is the only writer. Unique violations (service name, execution id,
event seq, API key name) become `AlreadyExists`. `signals` opens one more connection of its
own, for LISTEN, when first used (see `pg_signals`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable

import asyncpg

from adapters.storage.pg_migrations import check_schema_name, migrate
from adapters.storage.pg_signals import PostgresSignals
from adapters.storage.postgres.api_keys import PostgresApiKeyStore
from adapters.storage.postgres.catalog import PostgresCatalog
from adapters.storage.postgres.executions import PostgresExecutionLog
from adapters.storage.postgres.guard import GuardedPool
from adapters.storage.postgres.idempotency import PostgresIdempotencyKeys
from adapters.storage.postgres.leases import PostgresLeases
from adapters.storage.postgres.outbox import PostgresOutbox
from adapters.storage.postgres.queries import PostgresQueries
from adapters.storage.postgres.retention import PostgresRetention
from adapters.storage.postgres.rows import init_connection
from adapters.storage.postgres.services import PostgresRevisions, PostgresServiceStore
from adapters.storage.postgres.sql import Clock
from ports.storage import Storage

CLOSE_TIMEOUT = 10.0  # seconds close() waits for borrowed connections before cutting them
PING_TIMEOUT = 5.0
LISTENER_TIMEOUT = 5.0  # seconds the LISTEN connection may take to open or to answer


class PostgresStorage:
    """The storage ports over one PostgreSQL database; build it with `await PostgresStorage.open()`."""

    def __init__(self, pool: asyncpg.Pool, clock: Clock, signals: PostgresSignals) -> None:
        self._pool = pool
        guarded = GuardedPool(pool)  # storage trouble answered as `StorageUnavailable`
        self.signals = signals
        self.catalog = PostgresCatalog(guarded, clock)
        self.services = PostgresServiceStore(guarded, clock)
        self.executions = PostgresExecutionLog(guarded)
        self.workflow_executions = self.executions
        self.queries = PostgresQueries(guarded)
        self.leases = PostgresLeases(guarded)
        self.retention = PostgresRetention(guarded)
        self.revisions = PostgresRevisions(guarded)
        self.api_keys = PostgresApiKeyStore(guarded)
        self.idempotency = PostgresIdempotencyKeys(guarded)
        self.outbox = PostgresOutbox(guarded)

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        command_timeout: float | None = 60.0,
        clock: Clock = time.time,
    ) -> PostgresStorage:
        """Connect a pool to `dsn` (`postgresql://user:pass@host:port/db`) and apply pending
        migrations. `schema` keeps Flux's tables in that schema (created if missing) instead of
        the user's default one, so several deployments or test runs can share a database."""
        settings = {"application_name": "flux"}
        if schema is not None:
            settings["search_path"] = check_schema_name(schema)
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            command_timeout=command_timeout,
            init=init_connection,
            server_settings=settings,
        )
        try:
            async with pool.acquire() as conn:
                await migrate(conn, schema=schema)
                scope = await conn.fetchval("SELECT current_schema()")
        except BaseException:
            pool.terminate()
            raise

        def connect_listener() -> Awaitable[asyncpg.Connection]:
            return asyncpg.connect(
                dsn,
                timeout=LISTENER_TIMEOUT,
                command_timeout=LISTENER_TIMEOUT,
                server_settings={**settings, "application_name": "flux-listener"},
            )

        return cls(pool, clock, PostgresSignals(connect_listener, scope))

    async def health(self) -> str:
        """One round trip, bounded: a write probe that stores nothing (a transaction that takes
        a write lock on the revisions table and rolls back), which a read-only server refuses."""
        try:
            async with asyncio.timeout(PING_TIMEOUT):
                async with self._pool.acquire() as conn:
                    writable = await conn.fetchval(
                        "SELECT NOT pg_is_in_recovery() "
                        "AND current_setting('transaction_read_only') = 'off'"
                    )
                    if not writable:
                        return "read-only"
                    try:
                        async with conn.transaction():
                            await conn.execute("LOCK TABLE revisions IN ROW EXCLUSIVE MODE")
                            raise _Probed
                    except _Probed:
                        pass
        except asyncpg.ReadOnlySQLTransactionError:
            return "read-only"
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            return "unreachable"
        return "ok"

    async def close(self) -> None:
        """Wait for borrowed connections to come back (bounded), then close them all."""
        await self.signals.close()
        try:
            await asyncio.wait_for(self._pool.close(), CLOSE_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(Exception):
                self._pool.terminate()


class _Probed(Exception):
    """Rolls the health probe's transaction back."""


def _fits(storage: PostgresStorage) -> Storage:
    """Never called: mypy checks here that `PostgresStorage` offers every storage port."""
    return storage
