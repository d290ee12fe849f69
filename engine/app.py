"""Use cases of the main server: the workflow catalog, services, and calls to their endpoints.

Every decision is a pure function of `core`; this module only fetches what the decision needs
through the ports and hands the result to the runtime. Resolutions are memoised by
(services revision, catalog revision), so a call costs one small read of both revisions
(`Revisions.current`) however large the catalog is, and any register, delete or service edit is
seen by the very next request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from core.errors import (
    ExecutionNotFound,
    ServiceNotFound,
    WorkflowNotFound,
)
from core.model import (
    CatalogSnapshot,
    Endpoint,
    Execution,
    ExecutionEvent,
    Resolution,
    ServiceDefinition,
    WorkflowInfo,
    WorkflowRef,
    WorkflowVersion,
)
from core.resolve import find_endpoint, resolve
from core.services import ServiceUpdate, apply_update
from engine.registration import load_workflows
from ports.catalog import Catalog, Registered
from ports.services import Revisions, ServiceStore


class Executor(Protocol):
    """What runs executions for the server: the embedded `engine.runtime.Runtime`, or the
    `engine.dispatch.Dispatcher` that leaves running them to worker processes."""

    async def start(self, version: WorkflowVersion, body: Any) -> Execution: ...
    async def run(self, version: WorkflowVersion, body: Any) -> Execution: ...
    async def resume(self, execution_id: str, body: Any, *, wait: bool) -> Execution: ...
    async def get(self, execution_id: str) -> Execution: ...
    def watch(self, execution_id: str) -> AsyncIterator[Execution | ExecutionEvent]: ...
    async def recover(self) -> Any: ...
    async def close(self) -> None: ...


class FluxApp:
    def __init__(
        self, catalog: Catalog, services: ServiceStore, revisions: Revisions, runtime: Executor
    ) -> None:
        self.catalog = catalog
        self.services = services
        self.revisions = revisions
        self.runtime = runtime
        self._memo_key: tuple[int, int] = (-1, -1)
        self._resolutions: dict[str, Resolution | None] = {}
        self._versions: dict[tuple[WorkflowRef, int | None], WorkflowVersion] = {}
        self._snapshot: CatalogSnapshot | None = None

    # -- catalog -----------------------------------------------------------------------------

    async def register(self, source: str, filename: str) -> list[Registered]:
        # Importing user code may block (top-level I/O, heavy imports): keep it off the loop.
        loaded = await asyncio.to_thread(load_workflows, source, filename)
        return await self.catalog.register([item.new_workflow for item in loaded])

    async def list_workflows(self, namespace: str | None = None) -> list[WorkflowInfo]:
        return await self.catalog.list(namespace)

    async def workflow_versions(self, ref: WorkflowRef) -> list[WorkflowInfo]:
        versions = await self.catalog.versions(ref)
        if not versions:
            raise WorkflowNotFound(f"workflow '{ref}' is not registered", ref=str(ref))
        return versions

    async def delete_workflow(self, ref: WorkflowRef, version: int | None = None) -> int:
        deleted = await self.catalog.delete(ref, version)
        if not deleted:
            what = f"version {version} of workflow '{ref}'" if version else f"workflow '{ref}'"
            raise WorkflowNotFound(f"{what} is not registered", ref=str(ref))
        return deleted

    async def workflow_version(
        self, ref: WorkflowRef, version: int | None = None
    ) -> WorkflowVersion:
        found = await self.catalog.get(ref, version)
        if found is None:
            what = f"version {version} of workflow '{ref}'" if version else f"workflow '{ref}'"
            raise WorkflowNotFound(f"{what} is not registered", ref=str(ref), version=version)
        return found

    # -- services ----------------------------------------------------------------------------

    async def create_service(self, service: ServiceDefinition) -> Resolution:
        created = await self.services.create(service)
        return resolve(created, await self._current_snapshot())

    async def update_service(self, name: str, update: ServiceUpdate) -> Resolution:
        return await self.edit_service(name, lambda service: apply_update(service, update))

    async def edit_service(
        self, name: str, edit: Callable[[ServiceDefinition], ServiceDefinition]
    ) -> Resolution:
        updated = await self.services.update(name, edit)
        return resolve(updated, await self._current_snapshot())

    async def delete_service(self, name: str) -> None:
        if not await self.services.delete(name):
            raise ServiceNotFound(f"service '{name}' not found", service=name)

    async def list_services(self) -> list[Resolution]:
        snapshot = await self._current_snapshot()
        return [resolve(service, snapshot) for service in await self.services.list()]

    async def resolution(self, name: str) -> Resolution:
        """The service's resolution against the catalog as it is now (memoised)."""
        await self._refresh_memo()
        return await self._memoised_resolution(name)

    async def endpoint(self, service: str, workflow: str) -> Endpoint:
        return find_endpoint(await self.resolution(service), workflow)

    async def service_version(
        self, service: str, workflow: str, version: int | None = None
    ) -> WorkflowVersion:
        """The workflow version a call to `/services/{service}/{workflow}` runs."""
        await self._refresh_memo()
        endpoint = find_endpoint(await self._memoised_resolution(service), workflow)
        return await self._memoised_version(
            endpoint.workflow.ref, version or endpoint.workflow.version
        )

    async def _refresh_memo(self) -> None:
        key = await self.revisions.current()
        if key != self._memo_key:
            self._memo_key = key
            self._resolutions = {}
            self._versions = {}

    async def _memoised_resolution(self, name: str) -> Resolution:
        if name not in self._resolutions:
            service = await self.services.get(name)
            self._resolutions[name] = (
                None if service is None else resolve(service, await self._current_snapshot())
            )
        found = self._resolutions[name]
        if found is None:
            raise ServiceNotFound(f"service '{name}' not found", service=name)
        return found

    async def _memoised_version(self, ref: WorkflowRef, version: int | None) -> WorkflowVersion:
        key = (ref, version)
        found = self._versions.get(key)
        if found is None:
            found = self._versions[key] = await self.workflow_version(ref, version)
        return found

    async def _current_snapshot(self) -> CatalogSnapshot:
        revision = await self.catalog.revision()
        if self._snapshot is None or self._snapshot.revision != revision:
            self._snapshot = await self.catalog.snapshot()
        return self._snapshot

    # -- executions --------------------------------------------------------------------------

    async def pinned(self, ref: WorkflowRef, version: int | None) -> WorkflowVersion:
        """The version a by-ref call runs: the latest unless one is named."""
        await self._refresh_memo()
        return await self._memoised_version(ref, version)

    async def execution_of(self, ref: WorkflowRef, execution_id: str) -> Execution:
        """The execution, provided it belongs to `ref` (else it is not found for this route)."""
        execution = await self.runtime.get(execution_id)
        if execution.ref != ref:
            raise ExecutionNotFound(
                f"execution '{execution_id}' not found for workflow '{ref}'",
                execution_id=execution_id,
            )
        return execution
