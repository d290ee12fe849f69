"""What a storage adapter offers as a whole: every storage port, plus its own lifetime."""

from __future__ import annotations

from typing import Protocol

from ports.auth import ApiKeyStore
from ports.catalog import Catalog
from ports.executions import ExecutionLog, ExecutionSignals, Leases
from ports.services import Revisions, ServiceStore


class Storage(Protocol):
    @property
    def catalog(self) -> Catalog: ...
    @property
    def services(self) -> ServiceStore: ...
    @property
    def executions(self) -> ExecutionLog: ...
    @property
    def leases(self) -> Leases: ...
    @property
    def signals(self) -> ExecutionSignals: ...
    @property
    def revisions(self) -> Revisions: ...
    @property
    def api_keys(self) -> ApiKeyStore: ...

    async def ping(self) -> bool:
        """Whether the database answers."""

    async def close(self) -> None: ...
