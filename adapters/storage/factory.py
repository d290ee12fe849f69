"""Pick and open the storage adapter a database URL names.

- `sqlite:///relative/flux.db`, `sqlite:////absolute/flux.db` (the older `sqlite+aiosqlite://`
  form still works) or a plain path: SQLite, one machine (the parent directory is created if
  missing).
- `postgresql://user:password@host:5432/db` (also `postgres://`, `postgresql+asyncpg://`):
  PostgreSQL, any number of replicas. An optional `?schema=NAME` keeps Flux's tables in that
  schema; every other query parameter is passed on to asyncpg (e.g. `sslmode=require`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from adapters import config
from ports.storage import Storage

POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")


def sqlite_file(database_url: str) -> Path | None:
    """The file of a SQLite URL or plain path; None when the URL names another database."""
    if "://" in database_url:
        path = config.sqlite_path(database_url)
    else:
        path = database_url
    if path == ":memory:":
        # Every connection to :memory: is a database of its own, and the adapter uses two.
        raise ValueError("an in-memory SQLite database is not supported: name a file")
    return None if path is None else Path(path)


def postgres_dsn(database_url: str) -> tuple[str, str | None] | None:
    """(dsn for asyncpg, schema) of a PostgreSQL URL; None when the URL names another database."""
    parts = urlsplit(database_url)
    if parts.scheme not in POSTGRES_SCHEMES:
        return None
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((value for key, value in query if key == "schema"), None)
    rest = urlencode([(key, value) for key, value in query if key != "schema"])
    return urlunsplit(parts._replace(scheme="postgresql", query=rest)), schema or None


async def open_storage(database_url: str, *, exclusive: bool = False) -> Storage:
    """Open the storage `database_url` names, migrated and ready; the caller closes it.

    `exclusive`: a server's storage. An embedded (SQLite) database serves one server only: its
    lock is taken before anything is read or written, and `StorageInUse` names the process that
    holds it. PostgreSQL serves any number of replicas and ignores it."""
    dsn = postgres_dsn(database_url)
    if dsn is not None:
        # Imported here so a SQLite-only install never loads the PostgreSQL driver.
        from adapters.storage.postgres import PostgresStorage

        return await PostgresStorage.open(dsn[0], schema=dsn[1])
    path = sqlite_file(database_url)
    if path is None:
        # Only the scheme goes into the message: the rest may hold a password.
        raise ValueError(
            f"unsupported database URL scheme {urlsplit(database_url).scheme!r}: "
            "use sqlite:///path/flux.db or postgresql://user@host/db"
        )
    from adapters.storage.sqlite import SqliteStorage

    await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    return await SqliteStorage.open(path, exclusive=exclusive)
