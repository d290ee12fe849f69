"""The standalone process's endpoint cache, driven by a fake fetch and a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from adapters.http.endpoint_cache import EndpointCache
from core import errors
from core.convert import resolution_from_json, service_json
from core.endpoint_cache import Known, ServiceMissing, clashing_names, served_endpoints
from core.model import Collision, Endpoint, Resolution, ServiceDefinition, WorkflowInfo, WorkflowRef

SERVICE = ServiceDefinition(name="billing", namespaces=("billing",))


def resolution(*endpoints: Endpoint, collisions: tuple[Collision, ...] = ()) -> Resolution:
    return Resolution(SERVICE, 1, tuple(sorted(endpoints, key=lambda e: e.name)), collisions)


async def absent(cache: EndpointCache, name: str) -> bool:
    """Whether the lookup answers the main server's 404 for `name`."""
    try:
        await cache.lookup(name)
    except errors.EndpointNotFound:
        return True
    return False


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def endpoint(name: str, namespace: str = "billing") -> Endpoint:
    return Endpoint(name, WorkflowInfo(WorkflowRef(namespace, name), 1))


class FakeServer:
    """Answers like `GET /services/{name}`; counts calls; can fail or be slow on purpose."""

    def __init__(self, *names: str) -> None:
        self.names = list(names)
        self.collisions: list[Collision] = []
        self.calls: list[str | None] = []
        self.failure: errors.FluxError | None = None
        self.gate: asyncio.Event | None = None

    async def __call__(self, authorization: str | None) -> Known:
        self.calls.append(authorization)
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return resolution(*(endpoint(n) for n in self.names), collisions=tuple(self.collisions))


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(server: FakeServer, clock: Clock, **kwargs) -> EndpointCache:
    return EndpointCache(server, clock=clock, **kwargs)


async def test_first_lookup_fetches_and_later_ones_use_memory(clock):
    server = FakeServer("invoice", "refund")
    cache = make(server, clock, ttl=60)
    assert await cache.lookup("invoice") == endpoint("invoice")
    clock.advance(59)
    assert await cache.lookup("refund") == endpoint("refund")
    assert len(server.calls) == 1
    assert cache.age() == pytest.approx(59)


async def test_entries_expire_after_the_ttl(clock):
    server = FakeServer("invoice", "internal")
    cache = make(server, clock, ttl=60)
    assert await cache.lookup("internal") == endpoint("internal")
    server.names.remove("internal")  # excluded from the service
    clock.advance(30)
    assert await cache.lookup("internal") == endpoint("internal")  # still within the TTL
    clock.advance(30)
    assert await absent(cache, "internal")
    assert len(server.calls) == 2


async def test_a_miss_for_an_unknown_name_forces_one_refresh(clock):
    server = FakeServer("invoice")
    cache = make(server, clock, ttl=60)
    await cache.lookup("invoice")
    server.names.append("receipt")  # registered after the last fetch
    clock.advance(1)
    assert await cache.lookup("receipt") == endpoint("receipt")
    assert len(server.calls) == 2


async def test_unknown_names_are_cached_negatively_for_a_short_time(clock):
    server = FakeServer("invoice")
    cache = make(server, clock, ttl=60, negative_ttl=2)
    await cache.lookup("invoice")
    clock.advance(1)
    assert await absent(cache, "nope")
    assert len(server.calls) == 2
    for _ in range(100):
        assert await absent(cache, "nope")
    clock.advance(1.5)
    assert await absent(cache, "nope")
    assert len(server.calls) == 2
    clock.advance(1)  # the negative entry has run out: ask again
    server.names.append("nope")
    assert await cache.lookup("nope") == endpoint("nope")
    assert len(server.calls) == 3


async def test_default_negative_ttl_is_short_and_never_longer_than_the_ttl(clock):
    assert make(FakeServer(), clock, ttl=60).policy.negative_seconds == 2
    assert make(FakeServer(), clock, ttl=1).policy.negative_seconds == 1


async def test_distinct_unknown_names_right_after_a_refresh_do_not_refetch(clock):
    server = FakeServer("invoice")
    cache = make(server, clock, ttl=60, min_refresh_interval=0.5)
    await cache.lookup("invoice")
    for index in range(50):
        assert await absent(cache, f"bad{index}")
    assert len(server.calls) == 1


async def test_fifty_concurrent_misses_share_one_fetch(clock):
    server = FakeServer("invoice")
    server.gate = asyncio.Event()
    cache = make(server, clock, ttl=60)
    lookups = [asyncio.create_task(cache.lookup("invoice")) for _ in range(50)]
    await asyncio.sleep(0)
    server.gate.set()
    results = await asyncio.wait_for(asyncio.gather(*lookups), 5)
    assert results == [endpoint("invoice")] * 50
    assert len(server.calls) == 1


async def test_fifty_concurrent_misses_of_an_unknown_name_share_one_forced_fetch(clock):
    server = FakeServer("invoice")
    cache = make(server, clock, ttl=60)
    await cache.lookup("invoice")
    clock.advance(5)
    server.gate = asyncio.Event()
    lookups = [asyncio.create_task(absent(cache, "ghost")) for _ in range(50)]
    await asyncio.sleep(0)
    server.gate.set()
    assert await asyncio.wait_for(asyncio.gather(*lookups), 5) == [True] * 50
    assert len(server.calls) == 2


async def test_a_waiter_giving_up_does_not_cancel_the_shared_fetch(clock):
    server = FakeServer("invoice")
    server.gate = asyncio.Event()
    cache = make(server, clock, ttl=60)
    impatient = asyncio.create_task(cache.lookup("invoice"))
    patient = asyncio.create_task(cache.lookup("invoice"))
    await asyncio.sleep(0)
    impatient.cancel()
    server.gate.set()
    assert await asyncio.wait_for(patient, 5) == endpoint("invoice")
    assert len(server.calls) == 1


async def test_fetch_errors_reach_every_waiter_and_the_next_lookup_recovers(clock):
    server = FakeServer("invoice")
    server.failure = errors.UpstreamUnavailable("down")
    server.gate = asyncio.Event()
    cache = make(server, clock, ttl=60)
    lookups = [asyncio.create_task(cache.lookup("invoice")) for _ in range(10)]
    await asyncio.sleep(0)
    server.gate.set()
    results = await asyncio.gather(*lookups, return_exceptions=True)
    assert all(isinstance(r, errors.UpstreamUnavailable) for r in results)
    assert len(server.calls) == 1
    assert cache.data is None and cache.age() is None

    server.failure = None
    assert await cache.lookup("invoice") == endpoint("invoice")
    assert len(server.calls) == 2


async def test_expired_data_is_not_served_while_the_server_is_down(clock):
    server = FakeServer("invoice")
    cache = make(server, clock, ttl=1)
    await cache.lookup("invoice")
    server.failure = errors.UpstreamUnavailable("down")
    clock.advance(2)
    with pytest.raises(errors.UpstreamUnavailable):
        await cache.lookup("invoice")
    server.failure = None
    assert await cache.lookup("invoice") == endpoint("invoice")


async def test_the_callers_authorization_is_used_for_the_refresh(clock):
    server = FakeServer("invoice")
    cache = make(server, clock, ttl=60)
    await cache.lookup("invoice", "Bearer caller")
    assert server.calls == ["Bearer caller"]


async def test_a_credential_error_of_one_caller_is_not_shared_with_another(clock):
    calls: list[str | None] = []
    gate = asyncio.Event()

    async def fetch(authorization: str | None) -> Known:
        calls.append(authorization)
        await gate.wait()
        if authorization != "Bearer good":
            raise errors.Unauthenticated("bad token")
        return resolution(endpoint("invoice"))

    cache = EndpointCache(fetch, clock=clock, ttl=60)
    bad = asyncio.create_task(cache.lookup("invoice", "Bearer bad"))
    good = asyncio.create_task(cache.lookup("invoice", "Bearer good"))
    await asyncio.sleep(0)
    gate.set()
    with pytest.raises(errors.Unauthenticated):
        await asyncio.wait_for(bad, 5)
    assert await asyncio.wait_for(good, 5) == endpoint("invoice")
    assert calls == ["Bearer bad", "Bearer good"]


async def test_collisions_and_reserved_names_get_the_main_servers_errors(clock):
    server = FakeServer("invoice", "health")
    server.collisions = [
        Collision(
            "process", (WorkflowRef("analytics", "process"), WorkflowRef("billing", "process"))
        )
    ]
    cache = make(server, clock, ttl=60)
    with pytest.raises(errors.NameCollision) as collision:
        await cache.lookup("process")
    assert collision.value.details["namespaces"] == ["analytics", "billing"]
    with pytest.raises(errors.EndpointNotFound) as reserved:
        await cache.lookup("health")
    assert reserved.value.details["reserved"] is True
    data = await cache.current()
    assert [e.name for e in served_endpoints(data)] == ["invoice"]
    assert clashing_names(data) == ("health",)


async def test_a_missing_service_answers_service_not_found_for_every_name(clock):
    async def fetch(authorization: str | None) -> Known:
        return ServiceMissing("billing")

    cache = EndpointCache(fetch, clock=clock, ttl=60)
    for name in ("invoice", "health", "x"):
        with pytest.raises(errors.ServiceNotFound):
            await cache.lookup(name)


async def test_a_refresh_reports_old_and_new_data(clock):
    seen: list[tuple] = []
    server = FakeServer("invoice")
    cache = EndpointCache(server, clock=clock, ttl=1, on_refresh=lambda a, b: seen.append((a, b)))
    await cache.lookup("invoice")
    clock.advance(1)
    await cache.lookup("invoice")
    assert seen[0][0] is None and seen[1][0] is seen[0][1]


def test_the_main_servers_service_body_reads_back_into_the_same_resolution():
    info = WorkflowInfo(WorkflowRef("billing", "invoice"), 3, {"type": "object"}, "Bill.")
    collision = Collision(
        "process", (WorkflowRef("analytics", "process"), WorkflowRef("billing", "process"))
    )
    original = Resolution(
        ServiceDefinition(name="billing", namespaces=("analytics", "billing"), mcp_enabled=True),
        7,
        (Endpoint("invoice", info),),
        (collision,),
        (WorkflowRef("billing", "gone"),),
    )
    assert resolution_from_json(service_json(original.service, original)) == original
