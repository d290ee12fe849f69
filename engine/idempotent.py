"""Calls that carry an `Idempotency-Key` (SPEC §8): a retry of a run or resume starts nothing
and is answered what its first request is answered.

The first request with a key chooses its execution id up front, claims the key for it (with the
request's fingerprint) and only then runs, under that id. A later request with the key:

- another fingerprint (another body, target, version or resumed execution) is refused with
  `IdempotencyKeyReused`, whatever became of the first;
- otherwise it is a retry: it attaches to the execution the key names, through the same checks
  as a status read (the caller may run the target, the execution is one of its runs), waiting
  for it as a sync call does, or answering it at once as an async call does.

A first request refused before anything ran (no such target or execution, not allowed, a body
the workflow refuses, a resume of an execution that is not paused) gives its key back: a
corrected retry runs afresh, and the same mistake is refused again, as it was the first time.

What a retry may find, besides the plain case:

- The key, but no execution yet. The first request is between its claim and its store (a few
  milliseconds), or its server died in between. A retry waits for it a little (`GRACE`), then
  runs the request itself under the id the key promised. Should two do so at once (replicas),
  the id is the arbiter: the second store is `AlreadyExists`, and its request attaches.
- A resume's key on an execution still PAUSED and untouched since the key was claimed: the first
  resume never reached it (its server died). After the same grace the retry resumes it; a
  resume that lost that race to another one attaches. An execution that was touched since the
  claim (resumed, paused again, finished) is the first resume's doing: the retry attaches and
  answers it, never a 409.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from attrs import frozen

from core.errors import (
    AlreadyExists,
    ExecutionNotFound,
    Forbidden,
    IdempotencyKeyReused,
    InputValidationError,
    InvalidRequest,
    InvalidState,
    NotFound,
    Unauthenticated,
)
from core.idempotency import KEY_HEADER, Kind, fingerprint, principal_identity, validate_key
from core.model import Execution, ExecutionState
from core.permissions import Principal
from engine.calls import ServiceCalls, Target
from engine.live import new_execution_id
from ports.idempotency import Claimed, IdempotencyKeys

T = TypeVar("T")

# Seconds a retry waits for the first request to store what its key promised, looking every
# `POLL` seconds; a claim older than that whose execution is missing was lost with its server.
GRACE = 2.0
POLL = 0.02
# Refusals that happen before anything is stored or resumed: their key is given back.
REFUSALS = (
    NotFound,
    Forbidden,
    Unauthenticated,
    InputValidationError,
    InvalidRequest,
    InvalidState,
)


@frozen
class Answer:
    """What a call came to; `replayed`: a retry, answered with the first request's execution."""

    execution: Execution
    replayed: bool = False


@frozen
class _Request:
    principal: str
    key: str
    fingerprint: str


class IdempotentCalls:
    def __init__(
        self,
        calls: ServiceCalls,
        keys: IdempotencyKeys,
        *,
        window: float = 86_400.0,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = new_execution_id,
    ) -> None:
        """`window`: seconds a key holds; after that, the same key starts a new execution."""
        self._calls = calls
        self._keys = keys
        self._window = window
        self._clock = clock
        self._new_id = new_id

    async def call(
        self,
        principal: Principal,
        target: Target,
        body: Any,
        key: str | None,
        *,
        version: int | None = None,
        wait: bool = True,
        wait_at_most: float | None = None,
        callback_url: str | None = None,
    ) -> Answer:
        """`ServiceCalls.call`, once per `key` (None: no key, a plain call)."""

        async def run(execution_id: str | None) -> Execution:
            return await self._calls.call(
                principal,
                target,
                body,
                version=version,
                wait=wait,
                wait_at_most=wait_at_most,
                execution_id=execution_id,
                callback_url=callback_url,
            )

        if key is None:
            return Answer(await run(None))
        request = self._request(principal, key, "run", target, body, version=version)
        claimed = await self._claim(request, self._new_id())
        replayed = not claimed.won
        if replayed:
            found = await self._soon(claimed, lambda: self._stored(principal, target, claimed))
            if found is not None:
                attached = await self._attach(principal, target, claimed, wait, wait_at_most)
                return Answer(attached, replayed=True)
        try:
            ran = await self._given_back(request, claimed, run(claimed.execution_id))
            return Answer(ran, replayed)
        except AlreadyExists:  # another request ran it under that id first
            attached = await self._attach(principal, target, claimed, wait, wait_at_most)
            return Answer(attached, replayed)

    async def resume(
        self,
        principal: Principal,
        target: Target,
        execution_id: str,
        body: Any,
        key: str | None,
        *,
        wait: bool = True,
        wait_at_most: float | None = None,
    ) -> Answer:
        """`ServiceCalls.resume`, once per `key` (None: no key, a plain resume)."""

        async def resume() -> Execution:
            return await self._calls.resume(
                principal, target, execution_id, body, wait=wait, wait_at_most=wait_at_most
            )

        if key is None:
            return Answer(await resume())
        request = self._request(principal, key, "resume", target, body, execution_id=execution_id)
        claimed = await self._claim(request, execution_id)
        if claimed.won:
            return Answer(await self._given_back(request, claimed, resume()))
        touched = await self._soon(claimed, lambda: self._touched(principal, target, claimed))
        if touched is None:  # the first resume never reached it
            try:
                # Not given back on a refusal: the key stays the first request's.
                return Answer(await resume(), replayed=True)
            except InvalidState:  # resumed meanwhile by another retry
                pass
        return Answer(await self._attach(principal, target, claimed, wait, wait_at_most), True)

    # -- keys --------------------------------------------------------------------------------

    def _request(
        self,
        principal: Principal,
        key: str,
        kind: Kind,
        target: Target,
        body: Any,
        *,
        execution_id: str | None = None,
        version: int | None = None,
    ) -> _Request:
        print_ = fingerprint(
            kind, _target_text(target), body, execution_id=execution_id, version=version
        )
        return _Request(principal_identity(principal), validate_key(key), print_)

    async def _claim(self, request: _Request, execution_id: str) -> Claimed:
        claimed = await self._keys.claim(
            request.principal,
            request.key,
            request.fingerprint,
            execution_id,
            now=self._clock(),
            window=self._window,
        )
        if claimed.fingerprint != request.fingerprint:
            raise IdempotencyKeyReused(
                f"this {KEY_HEADER} was sent before with another request (another body or "
                "target); use a new key for a new request",
                execution_id=claimed.execution_id,
            )
        return claimed

    async def _given_back(
        self, request: _Request, claimed: Claimed, work: Awaitable[Execution]
    ) -> Execution:
        """`work`; a refusal before anything ran gives the key back."""
        try:
            return await work
        except REFUSALS:
            await self._keys.release(request.principal, request.key, claimed.execution_id)
            raise

    # -- what a retry finds ------------------------------------------------------------------

    async def _soon(self, claimed: Claimed, look: Callable[[], Awaitable[T | None]]) -> T | None:
        """What `look` finds, looked for again while it finds nothing and the claim is younger
        than `GRACE` (its request may still be on its way)."""
        for _ in range(int(GRACE / POLL) + 1):
            found = await look()
            if found is not None or self._clock() - claimed.created_at >= GRACE:
                return found
            await asyncio.sleep(POLL)
        return await look()

    async def _stored(
        self, principal: Principal, target: Target, claimed: Claimed
    ) -> Execution | None:
        try:
            return await self._calls.status(principal, target, claimed.execution_id)
        except ExecutionNotFound:
            return None

    async def _touched(
        self, principal: Principal, target: Target, claimed: Claimed
    ) -> Execution | None:
        """The resumed execution, unless it is still PAUSED as it was before the claim."""
        execution = await self._calls.status(principal, target, claimed.execution_id)
        untouched = (
            execution.state is ExecutionState.PAUSED and execution.updated_at < claimed.created_at
        )
        return None if untouched else execution

    async def _attach(
        self,
        principal: Principal,
        target: Target,
        claimed: Claimed,
        wait: bool,
        wait_at_most: float | None,
    ) -> Execution:
        return await self._calls.attach(
            principal, target, claimed.execution_id, wait=wait, wait_at_most=wait_at_most
        )


def _target_text(target: Target) -> str:
    """The target as the fingerprint names it: a service endpoint is the same target through
    the main server and the standalone process."""
    if target.ref is not None:
        return f"workflow:{target.ref}"
    return f"service:{target.service}/{target.endpoint}"
