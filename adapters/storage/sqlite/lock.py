"""One server per SQLite file: an OS lock on `<db>.lock`, held for the life of the process.

`fcntl.flock` on a file beside the database, taken without waiting before the database is
opened, so a second server finds it taken before it reads, migrates or recovers anything. The
file holds the holder's PID, for the message. The OS drops the lock when its holder dies, so a
`kill -9` leaves no stale lock: the next server takes it at once (the PID left in the file is
then only overwritten).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from core.errors import StorageInUse


def lock_path(database: str | Path) -> Path:
    return Path(f"{database}.lock")


class DatabaseLock:
    """Take it with `DatabaseLock.take(database)`; `release()` (or the process's end) frees it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def take(cls, database: str | Path) -> DatabaseLock:
        """Blocking file calls: run it off the event loop. Raises `StorageInUse` naming the PID
        of the holder when another process (or another open storage of this one) holds it."""
        path = lock_path(database)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"process {holder}" if holder else "another process"
            raise StorageInUse(
                f"the database {database} is in use by {who} (lock file {path}): "
                "one server per SQLite database",
                pid=holder,
                lock_file=str(path),
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # the PID of a holder that left would only mislead
        os.close(fd)  # closing the last descriptor drops the flock


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
