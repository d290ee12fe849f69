"""Ports of the execution store: the log of executions, the leases worker processes hold on
them, and the signals that wake whoever waits. Every adapter passes
tests/contract/test_storage.py, tests/contract/test_leases.py and tests/contract/test_signals.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from core.listing import Cursor, ExecutionFilter
from core.model import Execution, ExecutionEvent, ExecutionState, WorkflowRef


class ExecutionLog(Protocol):
    """Executions and their event logs: what a runtime driving executions writes and reads."""

    async def create(self, execution: Execution) -> None:
        """Persist a new execution (durable when this returns)."""

    async def save(self, execution: Execution, events: Sequence[ExecutionEvent] = ()) -> None:
        """Persist the execution's new state (state, output, error, pause point, updated_at)
        together with log events, in one transaction. What identifies a run (ref, version,
        input, created_at) is written once, by `create` or by the first save of an execution
        not stored yet; later saves leave it as it is, so the input is not encoded again."""

    async def append(self, events: Sequence[ExecutionEvent]) -> None:
        """Persist log events (task results, ...) durably."""

    async def get(self, execution_id: str) -> Execution | None: ...

    async def events(self, execution_id: str) -> list[ExecutionEvent]:
        """The execution's log, in `seq` order."""

    async def in_states(self, states: Sequence[ExecutionState]) -> list[Execution]:
        """Executions currently in any of `states` (used for recovery on start)."""

    async def save_if(
        self,
        execution: Execution,
        events: Sequence[ExecutionEvent],
        expected: Sequence[ExecutionState],
    ) -> bool:
        """`save`, only if the execution is stored and its stored state is one of `expected`,
        checked and written atomically; returns False (and writes nothing) otherwise. Whoever
        settles an execution it does not drive alone (a cancel, a deadline, a resume) writes
        through this, so the first of two racing writers wins and the other learns it lost."""

    async def overdue(self, now: float, limit: int) -> list[Execution]:
        """Up to `limit` executions CREATED, RUNNING or PAUSED whose deadline is at or before
        `now`, the earliest deadline first."""


class WorkflowExecutions(Protocol):
    """What deleting a workflow needs to know of its executions."""

    async def unfinished(self, ref: WorkflowRef, version: int | None = None) -> list[str]:
        """Ids of the executions of `ref` (of that version, or of any) that are CREATED,
        RUNNING or PAUSED, oldest first: those a delete would leave without their code."""


class ExecutionQueries(Protocol):
    """Finding executions (`GET /executions`). Every adapter passes
    tests/contract/test_queries.py."""

    async def page(
        self, filter: ExecutionFilter, limit: int, after: Cursor | None = None
    ) -> list[Execution]:
        """Up to `limit` executions that `filter` keeps, newest first (created_at, then id,
        both descending), starting after `after` (None: from the newest). Served by an index:
        a page reads about as many rows as it returns."""


class Leases(Protocol):
    """Who drives which execution: with worker processes an execution is driven by whoever
    holds its lease (an owner id and an expiry time). `now` is the caller's clock, in epoch
    seconds: leases assume clocks that agree to well within a lease's length."""

    async def claim(self, owner: str, *, limit: int, lease: float, now: float) -> list[Execution]:
        """Take up to `limit` CREATED or RUNNING executions whose lease is free or has expired
        (oldest first) and lease them to `owner` until `now + lease`, atomically: two
        claimers never get the same execution. Returns them as stored."""

    async def renew(
        self, owner: str, execution_ids: Sequence[str], *, lease: float, now: float
    ) -> list[str]:
        """Extend `owner`'s leases on those executions that are still CREATED or RUNNING;
        returns the ids it still holds (one missing from the answer was lost)."""

    async def release(self, owner: str, execution_ids: Sequence[str]) -> None:
        """Give up `owner`'s leases on these executions: they can be claimed at once."""

    async def save_owned(
        self, owner: str, execution: Execution, events: Sequence[ExecutionEvent] = ()
    ) -> bool:
        """`save`, only if `owner` still leases the execution and it is CREATED or RUNNING;
        returns False (and writes nothing) otherwise. A state other than CREATED or RUNNING
        ends the lease in the same transaction."""

    async def append_owned(self, owner: str, events: Sequence[ExecutionEvent]) -> bool:
        """`append`, only if `owner` still leases the events' execution (and it is CREATED or
        RUNNING); returns False (and writes nothing) otherwise."""


# Signals: with `flux start worker`, servers and workers learn of each other's writes through the
# store. Polling the store always works; a signal only says "read again now" so nobody waits for
# the next poll. A signal may be lost (a dropped connection, a store that has none) or come
# without a change, so callers keep polling, more slowly, as the safety net.


class Listener(Protocol):
    async def wait(self, timeout: float) -> bool:
        """True as soon as a signal has come since this listener was made or since the
        previous `wait` returned (one that came in between is kept, not lost); False once
        `timeout` seconds pass without one."""

    def close(self) -> None:
        """Stop listening; later waits only time out. Idempotent."""


class ExecutionSignals(Protocol):
    async def listen(self, execution_id: str | None) -> Listener:
        """A listener for writes committed after this returns. With an id: any change of that
        execution (its state or its log). With None: an execution may have become claimable
        (created CREATED, resumed, or released by a worker). The caller closes it."""


class Progress(Protocol):
    """Where a runtime whose watchers are elsewhere (a worker process's, whose watchers are at
    the server) sends the progress it shows before writing it (a task started). What it writes
    reaches the watchers with the write."""

    def watched(self, execution_id: str) -> bool: ...

    def show(self, execution_id: str, events: Sequence[ExecutionEvent]) -> None: ...
