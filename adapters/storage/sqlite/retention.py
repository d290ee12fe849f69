"""Retention on SQLite (`ports.retention.Retention`): old finished executions deleted, with
their events and callback deliveries, in small chunks, each a job of its own on the
group-commit writer. A chunk is a short transaction, so a purge of many rows never holds the
one writer for long: the calls' writes queued meanwhile go in the commits between chunks.
"""

from __future__ import annotations

import sqlite3
from functools import partial

from adapters.storage.group_commit import GroupCommitWriter
from adapters.storage.sqlite.sql import all_now, changed_now, marks
from adapters.storage.states import FINAL

# Executions deleted per writer job, with every event and delivery of theirs: small enough
# that a chunk of executions with long logs still commits in a few milliseconds.
CHUNK = 100

# The partial index of migration 7 serves this (`state IN FINAL` repeats its condition). It is
# named, since without statistics the planner prefers the index on state, which would read
# and sort every finished row to find the oldest few.
_OLDEST_FINISHED = (
    "SELECT id FROM executions INDEXED BY executions_finished_age "
    f"WHERE state IN {FINAL} AND updated_at < ? "
    "AND NOT EXISTS (SELECT 1 FROM idempotency_keys k WHERE k.execution_id = executions.id) "
    "ORDER BY updated_at LIMIT ?"
)


class SqliteRetention:
    def __init__(self, writer: GroupCommitWriter) -> None:
        self._writer = writer

    async def purge_finished(self, older_than: float, batch: int) -> int:
        """Up to `batch` executions, CHUNK per writer job; stops at the first chunk short of
        full (nothing more is old enough). At most ceil(batch / CHUNK) jobs."""
        purged = 0
        while purged < batch:
            wanted = min(CHUNK, batch - purged)
            done = await self._writer.submit(partial(_purge_finished, older_than, wanted))
            purged += done
            if done < wanted:
                break
        return purged


# -- on the writer thread, inside its transaction --------------------------------------------


def _purge_finished(older_than: float, limit: int, db: sqlite3.Connection) -> int:
    ids = [row[0] for row in all_now(db, _OLDEST_FINISHED, (older_than, limit))]
    if not ids:
        return 0
    where = f"({marks(ids)})"
    changed_now(db, f"DELETE FROM execution_events WHERE execution_id IN {where}", ids)
    changed_now(db, f"DELETE FROM callback_deliveries WHERE execution_id IN {where}", ids)
    return changed_now(db, f"DELETE FROM executions WHERE id IN {where}", ids)
