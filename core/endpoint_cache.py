"""Policy of the standalone process's endpoint cache: what a lookup may answer from memory and
when it must ask the main server again. Pure: the adapter supplies the clock readings and does the
fetching."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrs import evolve, field, frozen

from core.model import Collision, Endpoint, WorkflowInfo, WorkflowRef

# Paths the standalone process answers itself; an endpoint with one of these names stays
# reachable on the main server only.
RESERVED_ROUTES: frozenset[str] = frozenset({"health", "mcp"})

# A flood of distinct unknown names must not turn into a flood of refreshes.
NEGATIVE_CACHE_LIMIT = 10_000


@frozen
class Reserved:
    """An endpoint whose name clashes with one of the process's own routes."""

    name: str


@frozen
class ServiceEndpoints:
    """What the main server said about one service at one moment."""

    service: str
    exists: bool = True
    endpoints: tuple[Endpoint, ...] = ()
    collisions: tuple[Collision, ...] = ()
    reserved: tuple[str, ...] = ()
    mcp_enabled: bool = False

    def find(self, name: str) -> Endpoint | Collision | Reserved | None:
        if name in self.reserved or name in RESERVED_ROUTES:
            known = any(e.name == name for e in self.endpoints) or any(
                c.name == name for c in self.collisions
            )
            return Reserved(name) if known or name in self.reserved else None
        for endpoint in self.endpoints:
            if endpoint.name == name:
                return endpoint
        for collision in self.collisions:
            if collision.name == name:
                return collision
        return None

    @property
    def callable_endpoints(self) -> tuple[Endpoint, ...]:
        """Endpoints the process serves: reserved names are left out."""
        hidden = RESERVED_ROUTES.union(self.reserved)
        return tuple(e for e in self.endpoints if e.name not in hidden)

    @property
    def clashing_names(self) -> tuple[str, ...]:
        names = {e.name for e in self.endpoints} | {c.name for c in self.collisions}
        return tuple(sorted(RESERVED_ROUTES.intersection(names).union(self.reserved)))


@frozen
class CachePolicy:
    ttl: float = 60.0
    # How long "this name is unknown" is believed without asking again.
    negative_ttl: float | None = None
    # A miss forces a refresh only when the data is older than this, whatever the name.
    min_refresh_interval: float | None = None

    @property
    def negative_seconds(self) -> float:
        return self.negative_ttl if self.negative_ttl is not None else min(self.ttl, 2.0)

    @property
    def refresh_floor(self) -> float:
        if self.min_refresh_interval is not None:
            return self.min_refresh_interval
        return min(self.negative_seconds, 0.2)


@frozen
class CacheState:
    data: ServiceEndpoints | None = None
    fetched_at: float | None = None
    # name -> moment until which it is known to be absent
    negatives: Mapping[str, float] = field(factory=dict)


@frozen
class Answer:
    """Answer from memory: the item, or None for a name the service does not expose."""

    item: Endpoint | Collision | Reserved | None


@frozen
class Refresh:
    """Ask the main server first; `forced` when the data is fresh but lacks the name."""

    forced: bool = False


def is_fresh(state: CacheState, policy: CachePolicy, now: float) -> bool:
    return (
        state.data is not None
        and state.fetched_at is not None
        and now - state.fetched_at < policy.ttl
    )


def age(state: CacheState, now: float) -> float | None:
    return None if state.fetched_at is None else max(0.0, now - state.fetched_at)


def plan_lookup(state: CacheState, policy: CachePolicy, name: str, now: float) -> Answer | Refresh:
    if not is_fresh(state, policy, now):
        return Refresh()
    assert state.data is not None
    item = state.data.find(name)
    if item is not None:
        return Answer(item)
    until = state.negatives.get(name)
    if until is not None and now < until:
        return Answer(None)
    assert state.fetched_at is not None
    if now - state.fetched_at < policy.refresh_floor:
        return Answer(None)
    return Refresh(forced=True)


def with_data(state: CacheState, data: ServiceEndpoints, now: float) -> CacheState:
    # Fresh data may hold names that were absent before: forget every negative entry.
    return CacheState(data=data, fetched_at=now, negatives={})


def with_negative(state: CacheState, policy: CachePolicy, name: str, now: float) -> CacheState:
    negatives = {k: v for k, v in state.negatives.items() if v > now}
    if len(negatives) >= NEGATIVE_CACHE_LIMIT:
        negatives.clear()
    negatives[name] = now + policy.negative_seconds
    return evolve(state, negatives=negatives)


def service_endpoints_from_json(service: str, body: Mapping[str, Any]) -> ServiceEndpoints:
    """Read the `GET /services/{name}` body of the main server (docs/http-api.md)."""
    endpoints = tuple(_endpoint(item) for item in body.get("endpoints") or ())
    collisions = tuple(
        Collision(
            name=str(item["name"]),
            refs=tuple(WorkflowRef.parse(ref) for ref in item.get("refs") or ()),
        )
        for item in body.get("collisions") or ()
    )
    return ServiceEndpoints(
        service=str(body.get("name") or service),
        exists=True,
        endpoints=tuple(sorted(endpoints, key=lambda e: e.name)),
        collisions=tuple(sorted(collisions, key=lambda c: c.name)),
        reserved=tuple(sorted(str(n) for n in body.get("reserved") or ())),
        mcp_enabled=bool(body.get("mcp_enabled", False)),
    )


def _endpoint(item: Mapping[str, Any]) -> Endpoint:
    if "ref" in item:
        ref = WorkflowRef.parse(item["ref"])
    else:
        ref = WorkflowRef(str(item["namespace"]), str(item.get("workflow") or item["name"]))
    info = WorkflowInfo(
        ref=ref,
        version=int(item.get("version") or 0),
        input_schema=item.get("input_schema"),
        description=str(item.get("description") or ""),
    )
    return Endpoint(name=str(item.get("name") or ref.name), workflow=info)
