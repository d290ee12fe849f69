"""The standalone process's memory of its service's endpoints.

The policy (TTL, forced refresh on a miss, negative entries) lives in `core.endpoint_cache`;
this module runs it against a fetch function and a clock, and makes concurrent refreshes share
one upstream request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from core import errors
from core.endpoint_cache import (
    Answer,
    CachePolicy,
    CacheState,
    Known,
    age,
    endpoint_in,
    is_fresh,
    knows,
    plan_lookup,
    with_data,
    with_negative,
)
from core.model import Endpoint

Fetch = Callable[[str | None], Awaitable[Known]]
"""Fetch the service's resolution from the main server, with the caller's Authorization (or
None). Raises a `core.errors.FluxError` when the server cannot answer."""

# Credential errors belong to whoever sent the credentials; another waiter retries with its own.
_CREDENTIAL_ERRORS = (errors.Unauthenticated, errors.Forbidden)


class EndpointCache:
    def __init__(
        self,
        fetch: Fetch,
        *,
        ttl: float = 60.0,
        negative_ttl: float | None = None,
        min_refresh_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_refresh: Callable[[Known | None, Known], None] | None = None,
    ) -> None:
        self._fetch = fetch
        self.policy = CachePolicy(
            ttl=ttl, negative_ttl=negative_ttl, min_refresh_interval=min_refresh_interval
        )
        self._clock = clock
        self._on_refresh = on_refresh
        self._state = CacheState()
        self._flight: tuple[asyncio.Task[Known], str | None] | None = None
        self.fetches = 0  # upstream fetches started, for /health and tests

    @property
    def data(self) -> Known | None:
        return self._state.data

    def age(self) -> float | None:
        return age(self._state, self._clock())

    async def lookup(self, name: str, authorization: str | None = None) -> Endpoint:
        """The endpoint `name`; raises the typed error the main server gives for it (unknown
        service or endpoint, collision) or for not being reachable."""
        plan = plan_lookup(self._state, self.policy, name, self._clock())
        if isinstance(plan, Answer):
            assert self._state.data is not None
            return endpoint_in(self._state.data, name)
        data = await self.refresh(authorization)
        if not knows(data, name):
            self._state = with_negative(self._state, self.policy, name, self._clock())
        return endpoint_in(data, name)

    async def current(self, authorization: str | None = None) -> Known:
        """The cached data, refreshed first when older than the TTL."""
        if is_fresh(self._state, self.policy, self._clock()):
            assert self._state.data is not None
            return self._state.data
        return await self.refresh(authorization)

    async def refresh(self, authorization: str | None = None) -> Known:
        """Ask the main server now, joining a request already under way if there is one."""
        if self._flight is None or self._flight[0].done():
            self._start(authorization)
        assert self._flight is not None
        flight, flight_auth = self._flight
        try:
            # shield: one waiter giving up must not cancel the request the others wait for
            return await asyncio.shield(flight)
        except _CREDENTIAL_ERRORS:
            if flight_auth == authorization:
                raise
        return await asyncio.shield(self._start(authorization))

    def _start(self, authorization: str | None) -> asyncio.Task[Known]:
        flight = asyncio.get_running_loop().create_task(self._run_fetch(authorization))
        # a failed flight that nobody awaits any more must not log "exception never retrieved"
        flight.add_done_callback(_consume)
        self._flight = (flight, authorization)
        self.fetches += 1
        return flight

    async def _run_fetch(self, authorization: str | None) -> Known:
        data = await self._fetch(authorization)
        previous = self._state.data
        self._state = with_data(self._state, data, self._clock())
        if self._on_refresh is not None:
            self._on_refresh(previous, data)
        return data


def _consume(task: asyncio.Task[Known]) -> None:
    if not task.cancelled():
        task.exception()
