"""What a service exposes and which workflow version a call runs, as the stores hold them now.

Every service call asks `Revisions.current()` (one small read of both revisions) and answers
from a `core.memo.RevisionMemo` keyed by what it read, so a call does not rescan the catalog
however large it is, and any register, delete or service edit is seen by the very next request.
"""

from __future__ import annotations

from core.errors import WorkflowNotFound
from core.memo import DEFAULT_CAPACITY, Revision, RevisionMemo
from core.model import CatalogSnapshot, Resolution, WorkflowRef, WorkflowVersion
from core.resolve import find_endpoint, missing_service, resolve
from ports.catalog import Catalog
from ports.services import Revisions, ServiceStore

VersionKey = tuple[WorkflowRef, int | None]


def workflow_not_found(ref: WorkflowRef, version: int | None) -> WorkflowNotFound:
    what = f"version {version} of workflow '{ref}'" if version else f"workflow '{ref}'"
    return WorkflowNotFound(f"{what} is not registered", ref=str(ref), version=version)


class ServiceLookup:
    def __init__(
        self,
        catalog: Catalog,
        services: ServiceStore,
        revisions: Revisions,
        *,
        capacity: int = DEFAULT_CAPACITY,
    ) -> None:
        self.catalog = catalog
        self.services = services
        self.revisions = revisions
        self._resolutions: RevisionMemo[str, Resolution] = RevisionMemo(capacity=capacity)
        self._versions: RevisionMemo[VersionKey, WorkflowVersion] = RevisionMemo(capacity=capacity)
        self._snapshot: CatalogSnapshot | None = None

    @property
    def memoised(self) -> int:
        """How many resolutions are remembered now (bounded by the memo's capacity)."""
        return len(self._resolutions)

    async def resolution(self, service: str) -> Resolution:
        """The service resolved against the catalog as it is now."""
        return await self._resolution_at(service, await self.revisions.current())

    async def endpoint_version(
        self, service: str, endpoint: str, version: int | None = None
    ) -> WorkflowVersion:
        """The workflow version `/services/{service}/{endpoint}` runs: the resolved one unless
        the caller pins another version of the same workflow."""
        revision = await self.revisions.current()
        found = find_endpoint(await self._resolution_at(service, revision), endpoint)
        pinned = version or found.workflow.version
        return await self._version_at(found.workflow.ref, pinned, revision)

    async def version(self, ref: WorkflowRef, version: int | None = None) -> WorkflowVersion:
        """The version a by-ref call runs: the latest unless one is named."""
        return await self._version_at(ref, version, await self.revisions.current())

    async def snapshot(self) -> CatalogSnapshot:
        """The catalog as it is now (read again only when its revision moved)."""
        return await self._snapshot_at(await self.catalog.revision())

    async def _resolution_at(self, name: str, revision: Revision) -> Resolution:
        found = self._resolutions.lookup(name, revision)
        if found is not None:
            return found
        # Read after the revisions: the service and snapshot are at least that new, so they are
        # remembered under the services revision read before and the snapshot's own revision.
        service = await self.services.get(name)
        if service is None:
            raise missing_service(name)  # unknown names are not remembered: nothing to bound
        snapshot = await self._snapshot_at(revision[1])
        resolution = resolve(service, snapshot)
        self._resolutions = self._resolutions.remember(
            name, resolution, (revision[0], snapshot.revision)
        )
        return resolution

    async def _version_at(
        self, ref: WorkflowRef, version: int | None, revision: Revision
    ) -> WorkflowVersion:
        key = (ref, version)
        found = self._versions.lookup(key, revision)
        if found is not None:
            return found
        found = await self.catalog.get(ref, version)
        if found is None:
            raise workflow_not_found(ref, version)
        self._versions = self._versions.remember(key, found, revision)
        return found

    async def _snapshot_at(self, catalog_revision: int) -> CatalogSnapshot:
        known = self._snapshot
        if known is not None and known.revision >= catalog_revision:
            return known
        snapshot = await self.catalog.snapshot()
        if known is None or snapshot.revision > known.revision:
            self._snapshot = snapshot
        return snapshot
