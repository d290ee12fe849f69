"""What a storage adapter offers as a whole: every storage port, plus its own lifetime."""

from __future__ import annotations

from typing import Protocol

from ports.auth import ApiKeyStore
from ports.callbacks import CallbackOutbox
from ports.catalog import Catalog
from ports.executions import (
    ExecutionLog,
    ExecutionQueries,
    ExecutionSignals,
    Leases,
    WorkflowExecutions,
)
from ports.idempotency import IdempotencyKeys
from ports.retention import Retention
from ports.services import Revisions, ServiceStore


class Storage(Protocol):
    @property
    def catalog(self) -> Catalog: ...
    @property
    def services(self) -> ServiceStore: ...
    @property
    def executions(self) -> ExecutionLog: ...
    @property
    def workflow_executions(self) -> WorkflowExecutions: ...
    @property
    def queries(self) -> ExecutionQueries: ...
    @property
    def leases(self) -> Leases: ...
    @property
    def signals(self) -> ExecutionSignals: ...
    @property
    def revisions(self) -> Revisions: ...
    @property
    def api_keys(self) -> ApiKeyStore: ...
    @property
    def idempotency(self) -> IdempotencyKeys: ...
    @property
    def retention(self) -> Retention: ...
    @property
    def outbox(self) -> CallbackOutbox: ...

    async def health(self) -> str:
        """The database's state, probed with a write that stores nothing and bounded in time:
        `ok`, `read-only` (it answers but takes no writes: full, read-only, locked) or
        `unreachable`."""

    async def close(self) -> None: ...
