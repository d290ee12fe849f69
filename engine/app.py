"""Use cases of the workflow catalog and of services: register, list, show and delete
workflows; create, edit, list, show and delete services.

Every decision is a pure function of `core`; this module only fetches what a decision needs
through the ports. Changes need the admin permission, checked here; reads need only an
authenticated caller, which the front end has established. Calls to endpoints are the other
half of the engine (engine/calls.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from core import permissions
from core.errors import WorkflowNotFound
from core.model import Resolution, ServiceDefinition, WorkflowInfo, WorkflowRef, WorkflowVersion
from core.permissions import Principal
from core.resolve import missing_service, resolve
from core.services import ServiceUpdate, apply_update
from engine.lookup import ServiceLookup, workflow_not_found
from engine.registration import bundle_source
from ports.catalog import NewWorkflow, Registered

# Reads an uploaded module's workflows without running it in this process (engine/sandbox.py):
# (source, filename), where source may be a bundle's text (engine.registration.encode_bundle).
InspectModule = Callable[[str, str], Awaitable[Sequence[NewWorkflow]]]


class FluxApp:
    def __init__(self, lookup: ServiceLookup, inspect_module: InspectModule) -> None:
        self.lookup = lookup
        self._catalog = lookup.catalog
        self._services = lookup.services
        self._inspect = inspect_module

    # -- workflows ---------------------------------------------------------------------------

    async def register(
        self, principal: Principal, source: str | Mapping[str, str], filename: str = "workflow.py"
    ) -> list[Registered]:
        """Register one module's `source` named `filename`, or several files (relative path ->
        source) as a bundle whose modules import each other; one file stays a plain module."""
        permissions.require(principal, permissions.ADMIN)
        if not isinstance(source, str):
            source, filename = bundle_source(source)
        return await self._catalog.register(list(await self._inspect(source, filename)))

    async def list_workflows(self, namespace: str | None = None) -> list[WorkflowInfo]:
        return await self._catalog.list(namespace)

    async def workflow_versions(self, ref: WorkflowRef) -> list[WorkflowInfo]:
        versions = await self._catalog.versions(ref)
        if not versions:
            raise WorkflowNotFound(f"workflow '{ref}' is not registered", ref=str(ref))
        return versions

    async def workflow_version(
        self, ref: WorkflowRef, version: int | None = None
    ) -> WorkflowVersion:
        found = await self._catalog.get(ref, version)
        if found is None:
            raise workflow_not_found(ref, version)
        return found

    async def delete_workflow(
        self, principal: Principal, ref: WorkflowRef, version: int | None = None
    ) -> int:
        permissions.require(principal, permissions.ADMIN)
        deleted = await self._catalog.delete(ref, version)
        if not deleted:
            raise workflow_not_found(ref, version)
        return deleted

    # -- services ----------------------------------------------------------------------------

    async def create_service(self, principal: Principal, service: ServiceDefinition) -> Resolution:
        permissions.require(principal, permissions.ADMIN)
        created = await self._services.create(service)
        return resolve(created, await self.lookup.snapshot())

    async def update_service(
        self, principal: Principal, name: str, update: ServiceUpdate
    ) -> Resolution:
        permissions.require(principal, permissions.ADMIN)
        updated = await self._services.update(name, lambda service: apply_update(service, update))
        return resolve(updated, await self.lookup.snapshot())

    async def delete_service(self, principal: Principal, name: str) -> None:
        permissions.require(principal, permissions.ADMIN)
        if not await self._services.delete(name):
            raise missing_service(name)

    async def list_services(self, principal: Principal) -> list[Resolution]:
        permissions.require(principal, permissions.ADMIN)
        snapshot = await self.lookup.snapshot()
        return [resolve(service, snapshot) for service in await self._services.list()]

    async def service(self, name: str) -> Resolution:
        """The service's resolution against the catalog as it is now."""
        return await self.lookup.resolution(name)
