"""The service definitions port, and the revisions every service call reads. Every adapter
passes tests/contract/test_storage.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from core.model import ServiceDefinition


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
