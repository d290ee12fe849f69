"""The failures of starting things (a server, a worker, a database opened by `flux auth`) told
in one line instead of a traceback.

`describe` names what is known of an exception: an address already in use (with the
address), a database file that is not SQLite or is damaged, a database server that cannot be
reached or refuses the connection, any `FluxError` (its message: a `StorageInUse` naming the
PID of the server holding the database, say). `one_line` turns those into a `CliError`
(exit code 1) around a long-running call; anything else is left to propagate as the bug it is.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sqlite3
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import click

from adapters.cli.client import CliError
from core.errors import FluxError

_LISTEN_ERRNOS = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES}


def redact(url: str) -> str:
    """A database URL without its password."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{parts.username or ''}:***@{host}"
        if parts.port is not None:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "the configured database"


def _database_name(database_url: str | None) -> str:
    if database_url is None:
        return "the database"
    if database_url.startswith("sqlite:"):
        from adapters.config import sqlite_path

        try:
            return f"the database file {sqlite_path(database_url)}"
        except Exception:  # noqa: BLE001 - only a name for a message
            return f"the database {database_url}"
    return f"the database {redact(database_url)}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno:
        text = os.strerror(exc.errno)
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, then what it wraps (groups, causes), depth first."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        if current.__cause__ is not None:
            todo.append(current.__cause__)
        elif current.__context__ is not None and not current.__suppress_context__:
            todo.append(current.__context__)


def describe(
    exc: BaseException, *, address: str | None = None, database_url: str | None = None
) -> str | None:
    """One line for a failure we know, else None."""
    for cause in _causes(exc):
        line = _describe_one(cause, address, database_url)
        if line is not None:
            return line
    return None


def _describe_one(exc: BaseException, address: str | None, database_url: str | None) -> str | None:
    if isinstance(exc, CliError):
        return exc.format_message()
    if isinstance(exc, FluxError):
        return exc.message
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        return f"{_database_name(database_url)} is not a Flux database or is damaged ({exc})"
    if isinstance(exc, sqlite3.OperationalError):
        return f"cannot open {_database_name(database_url)} ({exc})"
    if type(exc).__module__.split(".")[0] == "asyncpg":
        return f"cannot use {_database_name(database_url)} ({_reason(exc)})"
    if isinstance(exc, OSError):
        if exc.errno in _LISTEN_ERRNOS and "bind" in str(exc):
            where = f"http://{address}" if address else "the address"
            return f"cannot listen on {where}: {_reason(exc).lower()}"
        if isinstance(exc, socket.gaierror | ConnectionError | TimeoutError) or exc.errno in (
            errno.ECONNREFUSED,
            errno.EHOSTUNREACH,
            errno.ENETUNREACH,
            errno.ETIMEDOUT,
        ):
            return f"cannot reach {_database_name(database_url)} ({_reason(exc).lower()})"
        if exc.errno in (errno.EACCES, errno.EROFS, errno.ENOSPC, errno.ENOENT):
            name = f" {exc.filename}" if exc.filename else ""
            return f"cannot use{name}: {_reason(exc).lower()}"
    return None


@contextlib.contextmanager
def one_line(*, address: str | None = None, database_url: str | None = None) -> Iterator[None]:
    """Known failures inside become one `error:` line (exit code 1)."""
    try:
        yield
    except (click.ClickException, click.Abort):
        raise
    except Exception as exc:
        line = describe(exc, address=address, database_url=database_url)
        if line is None:
            raise
        raise CliError(line) from None
