"""SQL text the SQLite and PostgreSQL adapters share."""

from __future__ import annotations

from core.model import IN_PROGRESS, ExecutionState

# The states a worker may lease, as an SQL list: `state IN {LEASABLE}`. Built from the core's
# one notion of "in progress", so a new such state cannot be forgotten in one statement. (The
# partial index of PostgreSQL migration 2 spells it out: a migration stays as it was applied.)
LEASABLE = "(" + ", ".join(f"'{state}'" for state in IN_PROGRESS) + ")"

# The states whose executions still need their workflow's code: in progress, or PAUSED (a
# resume runs on). (PostgreSQL migration 3's partial index and the deadline index of SQLite
# migration 10 / PostgreSQL migration 8 spell it out, in this order.)
UNFINISHED = "(" + ", ".join(f"'{state}'" for state in (*IN_PROGRESS, ExecutionState.PAUSED)) + ")"

# The final states, whose executions a retention purge may delete. Spelled in the order of
# SQLite migration 7's partial index (the enum's), which a query must repeat to use it.
FINAL = "(" + ", ".join(f"'{state}'" for state in ExecutionState if state.is_final) + ")"
