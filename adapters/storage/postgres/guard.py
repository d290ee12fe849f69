"""The connection pool behind every PostgreSQL store, with storage trouble answered.

A lost connection (the server restarted, the network dropped), a database that refuses
connections, a full disk or a read-only server becomes `StorageUnavailable` with a `reason`
(see `adapters.storage.faults`); any other database error (a constraint) stays as it was. A read
(a statement that starts with SELECT and locks nothing) that loses its connection is tried once
more on a fresh one, since reading twice changes nothing; a write never is: whether a write whose
connection dropped was committed cannot be known, so it is answered 503 and left to the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from adapters.storage import text
from adapters.storage.faults import unavailable
from core.errors import FluxError, InvalidRequest, StorageUnavailable

_UNSTORABLE_TEXT = (
    asyncpg.UntranslatableCharacterError,
    asyncpg.CharacterNotInRepertoireError,
    UnicodeEncodeError,
)

_LOST = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    # What a pooled connection the server ended while it was idle may answer its next query.
    asyncpg.InternalClientError,
    ConnectionError,
    OSError,
)
_REASONS: tuple[tuple[type[BaseException], str], ...] = (
    (asyncpg.DiskFullError, "full"),
    (asyncpg.ReadOnlySQLTransactionError, "read-only"),
    (asyncpg.TooManyConnectionsError, "busy"),
    (asyncpg.LockNotAvailableError, "busy"),
    (asyncpg.InsufficientResourcesError, "full"),
)


def pg_fault(exc: BaseException) -> FluxError | None:
    """The `StorageUnavailable` an asyncpg or OS error stands for (or the `InvalidRequest` of
    text the database cannot hold, should any slip past `text.check`); None for any other."""
    if isinstance(exc, StorageUnavailable):
        return exc
    if isinstance(exc, _UNSTORABLE_TEXT):
        refused = InvalidRequest(text.MESSAGE)
        refused.__cause__ = exc
        return refused
    if isinstance(exc, asyncpg.DataError) and isinstance(exc.__cause__, UnicodeEncodeError):
        return text.text_fault(exc.__cause__)
    reason = next((r for cls, r in _REASONS if isinstance(exc, cls)), None)
    if reason is None and _connection_lost(exc):
        reason = "unreachable"
    if reason is None:
        return None
    fault = unavailable(reason, exc)
    fault.__cause__ = exc
    return fault


def _connection_lost(exc: BaseException) -> bool:
    if isinstance(exc, asyncpg.InterfaceError):  # also a misuse (a bug); only "... is closed"
        return "closed" in str(exc) or "closing" in str(exc)
    return isinstance(exc, _LOST) and not isinstance(exc, TimeoutError)


def _lost(exc: BaseException) -> bool:
    fault = pg_fault(exc)
    return fault is not None and fault.details.get("reason") == "unreachable"


def _is_read(sql: str) -> bool:
    head = sql.lstrip().upper()
    return head.startswith("SELECT") and " FOR UPDATE" not in head and "PG_NOTIFY" not in head


class GuardedPool:
    """The `asyncpg.Pool` methods the stores use, with faults translated (see the module)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.raw = pool

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection for a transaction of the caller's: trouble inside it is translated,
        never retried (it may hold writes)."""
        try:
            async with self.raw.acquire() as conn:
                yield conn
        except Exception as exc:
            fault = pg_fault(exc)
            if fault is None:
                raise
            raise fault from exc

    async def execute(self, sql: str, *args: Any, timeout: float | None = None) -> str:
        return await self._call("execute", sql, args, timeout)

    async def fetch(self, sql: str, *args: Any, timeout: float | None = None) -> list[Any]:
        return await self._call("fetch", sql, args, timeout)

    async def fetchrow(self, sql: str, *args: Any, timeout: float | None = None) -> Any:
        return await self._call("fetchrow", sql, args, timeout)

    async def fetchval(self, sql: str, *args: Any, timeout: float | None = None) -> Any:
        return await self._call("fetchval", sql, args, timeout)

    async def _call(
        self, method: str, sql: str, args: tuple[Any, ...], timeout: float | None
    ) -> Any:
        attempts = 2 if _is_read(sql) else 1
        for attempt in range(attempts):
            try:
                return await getattr(self.raw, method)(sql, *args, timeout=timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if attempt + 1 < attempts and _lost(exc):
                    continue  # a read on a connection that died: once more, on another one
                fault = pg_fault(exc)
                if fault is None:
                    raise
                raise fault from exc
        raise AssertionError("unreachable")  # pragma: no cover
