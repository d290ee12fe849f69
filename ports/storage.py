"""Ports the engine needs from storage. Every adapter passes tests/contract/test_storage.py
(and, for `ExecutionSignals`, tests/contract/test_signals.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from attrs import frozen

from core.model import (
    CatalogSnapshot,
    Execution,
    ExecutionEvent,
    ExecutionState,
    ServiceDefinition,
    WorkflowInfo,
    WorkflowRef,
    WorkflowVersion,
)


@frozen
class NewWorkflow:
    """A workflow found in an uploaded module, before it gets a version number."""

    ref: WorkflowRef
    source: str
    source_hash: str
    input_schema: dict | None
    description: str


@frozen
class Registered:
    """The outcome of registering one workflow: its current version and whether it is new."""

    info: WorkflowInfo
    created: bool


class Catalog(Protocol):
    async def register(self, workflows: Sequence[NewWorkflow]) -> list[Registered]:
        """Store a new version of each workflow whose source hash differs from its latest
        version, all in one transaction. Moves the revision on if anything changed."""

    async def revision(self) -> int:
        """A number that changes on every register or delete."""

    async def snapshot(self) -> CatalogSnapshot:
        """The latest version of every workflow, with the revision it was read at."""

    async def get(self, ref: WorkflowRef, version: int | None = None) -> WorkflowVersion | None:
        """One version (the latest when `version` is None), with its source."""

    async def versions(self, ref: WorkflowRef) -> list[WorkflowInfo]:
        """All stored versions of a workflow, oldest first; empty if unknown."""

    async def list(self, namespace: str | None = None) -> list[WorkflowInfo]:
        """Latest version of each workflow, sorted by ref, optionally in one namespace."""

    async def delete(self, ref: WorkflowRef, version: int | None = None) -> int:
        """Delete one version or all versions; returns how many were deleted."""


class ServiceStore(Protocol):
    async def create(self, service: ServiceDefinition) -> ServiceDefinition:
        """Insert; raises `core.errors.AlreadyExists` when the name is taken."""

    async def get(self, name: str) -> ServiceDefinition | None: ...

    async def list(self) -> list[ServiceDefinition]:
        """All services sorted by name."""

    async def update(
        self, name: str, edit: Callable[[ServiceDefinition], ServiceDefinition]
    ) -> ServiceDefinition:
        """Atomically read, apply `edit` (a pure function) and write; the revision moves on by
        one. Two concurrent updates never lose each other's change. Raises
        `core.errors.ServiceNotFound` when there is no such service."""

    async def delete(self, name: str) -> bool: ...

    async def revision(self) -> int:
        """A number that changes on every create, update or delete of any service."""


class Revisions(Protocol):
    async def current(self) -> tuple[int, int]:
        """(services revision, catalog revision) in one read: what every service call checks
        to know whether the resolutions it memoised still hold, so it must be cheap."""


class ExecutionStore(Protocol):
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

    # Leases: with `flux start worker`, an execution is driven by whoever holds its lease
    # (an owner id and an expiry time). `now` is the caller's clock, in epoch seconds: leases
    # assume clocks that agree to well within a lease's length.

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
