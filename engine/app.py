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
from core.errors import InvalidState, WorkflowInUse, WorkflowNotFound
from core.model import Resolution, ServiceDefinition, WorkflowInfo, WorkflowRef, WorkflowVersion
from core.permissions import Principal
from core.resolve import missing_service, resolve
from core.services import ServiceUpdate, apply_update
from engine.bundles import bundle_source
from engine.lookup import ServiceLookup, workflow_not_found
from ports.catalog import NewWorkflow, Registered
from ports.executions import WorkflowExecutions

# Reads an uploaded module's workflows without running it in this process (engine/sandbox.py):
# (source, filename), where source may be a bundle's text (engine.bundles.encode_bundle).
InspectModule = Callable[[str, str], Awaitable[Sequence[NewWorkflow]]]
# Cancels one execution (the executor's `cancel`, ports/executor.py).
CancelExecution = Callable[[str], Awaitable[object]]
# The database's state for /health: "ok", "read-only" or "unreachable" (ports/storage.py).
StorageHealth = Callable[[], Awaitable[str]]


async def _always_ok() -> str:
    return "ok"


class FluxApp:
    def __init__(
        self,
        lookup: ServiceLookup,
        inspect_module: InspectModule,
        *,
        executions: WorkflowExecutions | None = None,
        cancel: CancelExecution | None = None,
        storage_health: StorageHealth = _always_ok,
    ) -> None:
        """`executions` and `cancel` guard workflow deletes (without them a delete is not
        checked against the workflow's executions); `storage_health` answers /health."""
        self.lookup = lookup
        self._catalog = lookup.catalog
        self._services = lookup.services
        self._inspect = inspect_module
        self._executions = executions
        self._cancel = cancel
        self._storage_health = storage_health

    async def storage_health(self) -> str:
        """The database's state: `ok`, `read-only` or `unreachable`."""
        return await self._storage_health()

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
        self,
        principal: Principal,
        ref: WorkflowRef,
        version: int | None = None,
        force: bool = False,
    ) -> int:
        """Delete one version, or all, of a workflow. Its CREATED, RUNNING or PAUSED executions
        (of that version) would be left without their code: `WorkflowInUse` (409, `count`)
        unless `force`, which cancels them first. The numbers deleted are never given again
        (the catalog's versions only grow)."""
        permissions.require(principal, permissions.ADMIN)
        if await self._catalog.get(ref, version) is None:
            raise workflow_not_found(ref, version)
        if self._executions is not None:
            unfinished = await self._executions.unfinished(ref, version)
            if unfinished and not force:
                which = f"{ref} v{version}" if version is not None else str(ref)
                raise WorkflowInUse(
                    f"workflow '{which}' has {len(unfinished)} created, running or paused "
                    "execution(s): delete with force=true to cancel them",
                    ref=str(ref),
                    count=len(unfinished),
                )
            for execution_id in unfinished:
                await self._cancel_one(execution_id)
        deleted = await self._catalog.delete(ref, version)
        if not deleted:
            raise workflow_not_found(ref, version)
        return deleted

    async def _cancel_one(self, execution_id: str) -> None:
        if self._cancel is None:
            raise RuntimeError("force needs the executor's cancel: FluxApp(cancel=...)")
        try:
            await self._cancel(execution_id)
        except InvalidState:
            pass  # it finished meanwhile: nothing left to cancel

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
