"""The service lookup the calls go through: bounded, and never stale after a register, even
when requests interleave with it (engine/lookup.py over core/memo.py)."""

from __future__ import annotations

import asyncio

import pytest

from adapters.storage.memory import MemoryStorage
from core.errors import EndpointNotFound, ServiceNotFound
from core.model import CatalogSnapshot, WorkflowRef
from core.services import new_service
from engine.lookup import ServiceLookup
from ports.catalog import NewWorkflow


def workflow(namespace: str, name: str) -> NewWorkflow:
    return NewWorkflow(WorkflowRef(namespace, name), f"# {name}", f"hash-{name}", None, "")


class GatedCatalog:
    """The memory catalog, with a gate that holds the next snapshot read after it was taken."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.gate: asyncio.Event | None = None
        self.taken = asyncio.Event()

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    async def snapshot(self) -> CatalogSnapshot:
        snapshot = await self.inner.snapshot()
        gate, self.gate = self.gate, None
        if gate is not None:
            self.taken.set()
            await gate.wait()  # a slow request: holds a snapshot that is about to be old
        return snapshot


@pytest.fixture
async def storage() -> MemoryStorage:
    storage = MemoryStorage()
    await storage.services.create(new_service("billing", namespaces=["billing"]))
    await storage.catalog.register([workflow("billing", "invoice")])
    return storage


async def test_unknown_service_names_are_not_remembered(storage):
    lookup = ServiceLookup(storage.catalog, storage.services, storage.revisions, capacity=64)
    for index in range(20_000):
        with pytest.raises(ServiceNotFound):
            await lookup.resolution(f"nope-{index}")
    assert lookup.memoised == 0
    await lookup.resolution("billing")
    assert lookup.memoised == 1


async def test_many_services_stay_within_the_capacity(storage):
    lookup = ServiceLookup(storage.catalog, storage.services, storage.revisions, capacity=8)
    for index in range(30):
        await storage.services.create(new_service(f"s{index}", namespaces=["billing"]))
    for index in range(30):
        assert (await lookup.resolution(f"s{index}")).endpoints[0].name == "invoice"
        assert lookup.memoised <= 8


async def test_a_slow_request_with_an_old_snapshot_does_not_hide_a_register(storage):
    catalog = GatedCatalog(storage.catalog)
    lookup = ServiceLookup(catalog, storage.services, storage.revisions)
    gate = catalog.gate = asyncio.Event()
    slow = asyncio.create_task(lookup.resolution("billing"))
    await asyncio.wait_for(catalog.taken.wait(), 5)  # it holds the snapshot without `receipt`

    await storage.catalog.register([workflow("billing", "receipt")])
    fresh = await lookup.resolution("billing")
    assert [e.name for e in fresh.endpoints] == ["invoice", "receipt"]

    # The slow request answers what it read, and must not be remembered over the newer one.
    gate.set()
    assert [e.name for e in (await asyncio.wait_for(slow, 5)).endpoints] == ["invoice"]
    again = await lookup.resolution("billing")
    assert [e.name for e in again.endpoints] == ["invoice", "receipt"]
    assert (await lookup.endpoint_version("billing", "receipt")).info.ref.name == "receipt"


async def test_an_endpoint_gone_after_a_delete_is_not_found_at_once(storage):
    lookup = ServiceLookup(storage.catalog, storage.services, storage.revisions)
    assert (await lookup.endpoint_version("billing", "invoice")).info.version == 1
    await storage.catalog.delete(WorkflowRef("billing", "invoice"))
    with pytest.raises(EndpointNotFound):
        await lookup.endpoint_version("billing", "invoice")
