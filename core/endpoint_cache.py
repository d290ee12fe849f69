"""Policy of the standalone process's endpoint cache: what a lookup may answer from memory and
when it must ask the main server again. Pure: the adapter supplies the clock readings and does the
fetching."""

from __future__ import annotations

from collections.abc import Mapping

from attrs import evolve, field, frozen

from core.model import Endpoint, Resolution
from core.resolve import (
    find_standalone_endpoint,
    missing_service,
    reserved_names,
    standalone_endpoints,
)

# A flood of distinct unknown names must not turn into a flood of refreshes.
NEGATIVE_CACHE_LIMIT = 10_000


@frozen
class ServiceMissing:
    """The main server said the service does not exist."""

    service: str


# What the main server said about the service at one moment.
Known = Resolution | ServiceMissing


def endpoint_in(known: Known, name: str) -> Endpoint:
    """The endpoint `name` of what is known, or the typed error the main server would give."""
    if isinstance(known, ServiceMissing):
        raise missing_service(known.service)
    return find_standalone_endpoint(known, name)


def served_endpoints(known: Known) -> tuple[Endpoint, ...]:
    return () if isinstance(known, ServiceMissing) else standalone_endpoints(known)


def clashing_names(known: Known | None) -> tuple[str, ...]:
    """Names of the service that the standalone process's own routes shadow."""
    return reserved_names(known) if isinstance(known, Resolution) else ()


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
    data: Known | None = None
    fetched_at: float | None = None
    # name -> moment until which it is known to be absent
    negatives: Mapping[str, float] = field(factory=dict)


@frozen
class Answer:
    """Answer from what is known (found or not)."""


@frozen
class Refresh:
    """Ask the main server first."""


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
    if knows(state.data, name):
        return Answer()
    until = state.negatives.get(name)
    if until is not None and now < until:
        return Answer()
    assert state.fetched_at is not None
    if now - state.fetched_at < policy.refresh_floor:
        return Answer()
    return Refresh()


def knows(known: Known, name: str) -> bool:
    """Whether `known` settles `name` without asking again: a missing service settles every
    name; a resolution settles the names it holds (endpoints and collisions)."""
    return isinstance(known, ServiceMissing) or known.lookup(name) is not None


def with_data(state: CacheState, data: Known, now: float) -> CacheState:
    # Fresh data may hold names that were absent before: forget every negative entry.
    return CacheState(data=data, fetched_at=now, negatives={})


def with_negative(state: CacheState, policy: CachePolicy, name: str, now: float) -> CacheState:
    negatives = {k: v for k, v in state.negatives.items() if v > now}
    if len(negatives) >= NEGATIVE_CACHE_LIMIT:
        negatives.clear()
    negatives[name] = now + policy.negative_seconds
    return evolve(state, negatives=negatives)
