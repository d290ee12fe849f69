"""Storage trouble as one typed error: what SQLite (or the file system under it) reports when
the database is busy, full, read-only or failing becomes `StorageUnavailable` with a `reason`,
which the HTTP adapter answers 503; anything else (a constraint, a bug) stays as it was.

`about` adds the execution a failed write was for, so the caller's answer can name it.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from core.errors import StorageUnavailable

# Primary SQLite result codes (the low byte of an extended code).
_SQLITE_REASONS = {
    5: "busy",  # SQLITE_BUSY: the busy timeout ran out
    6: "busy",  # SQLITE_LOCKED
    8: "read-only",  # SQLITE_READONLY
    10: "unreachable",  # SQLITE_IOERR
    13: "full",  # SQLITE_FULL
    14: "unreachable",  # SQLITE_CANTOPEN
}
_OS_REASONS = {errno.ENOSPC: "full", errno.EDQUOT: "full", errno.EROFS: "read-only"}

_MESSAGES = {
    "busy": "the database is locked by another process; try again",
    "full": "the database cannot grow: its disk is full",
    "read-only": "the database is read-only",
    "unreachable": "the database cannot be reached",
}


def unavailable(reason: str, cause: BaseException | None = None) -> StorageUnavailable:
    detail = f" ({cause})" if cause is not None and str(cause) else ""
    return StorageUnavailable(f"storage unavailable: {_MESSAGES[reason]}{detail}", reason=reason)


def sqlite_fault(exc: BaseException) -> StorageUnavailable | None:
    """The `StorageUnavailable` a SQLite or OS error stands for; None for any other error."""
    if isinstance(exc, StorageUnavailable):
        return exc
    reason: str | None = None
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int):
            reason = _SQLITE_REASONS.get(code & 0xFF)
        elif isinstance(exc, sqlite3.OperationalError):
            reason = _reason_from_text(str(exc))
    elif isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
        reason = _OS_REASONS.get(exc.errno or 0, "unreachable")
    if reason is None:
        return None
    fault = unavailable(reason, exc)
    fault.__cause__ = exc
    return fault


def _reason_from_text(text: str) -> str | None:
    text = text.lower()
    if "locked" in text or "busy" in text:
        return "busy"
    if "full" in text:
        return "full"
    if "readonly" in text or "read-only" in text:
        return "read-only"
    if "disk i/o" in text or "unable to open" in text:
        return "unreachable"
    return None


def about(fault: StorageUnavailable, execution_id: str) -> StorageUnavailable:
    """A copy of `fault` that names the execution the failed operation was for."""
    if fault.details.get("execution_id") == execution_id:
        return fault
    named = StorageUnavailable(fault.message, **{**fault.details, "execution_id": execution_id})
    named.__cause__ = fault.__cause__
    return named


@contextmanager
def for_execution(execution_id: str) -> Iterator[None]:
    """Storage trouble inside names the execution the operation was for."""
    try:
        yield
    except StorageUnavailable as fault:
        raise about(fault, execution_id) from fault.__cause__
