"""Calls to workflows: run, resume, status, watch and cancel, through a service endpoint or by
workflow ref.

These are the use cases every front end goes through (the aiohttp routes, the standalone
process by way of the main server, an application embedding the engine): each resolves what
the call names, checks that the caller may run that workflow, checks that an execution given
by id belongs to it, and only then reaches the executor. Front ends translate to and from
these calls and decide nothing themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any

from attrs import frozen

from core import callbacks, permissions, schema
from core.errors import ExecutionNotFound
from core.model import Execution, Launch, WorkflowRef, WorkflowVersion
from core.permissions import Principal
from core.resolve import find_endpoint
from core.stream import StreamItem
from engine.lookup import ServiceLookup
from engine.reattach import events_after
from ports.executions import ExecutionLog
from ports.executor import Executor


@frozen
class Target:
    """What a call names: an endpoint of a service, or a workflow by its ref."""

    service: str | None = None
    endpoint: str | None = None
    ref: WorkflowRef | None = None

    @classmethod
    def endpoint_of(cls, service: str, endpoint: str) -> Target:
        return cls(service=service, endpoint=endpoint)

    @classmethod
    def workflow(cls, ref: WorkflowRef) -> Target:
        return cls(ref=ref)


class ServiceCalls:
    def __init__(
        self,
        lookup: ServiceLookup,
        executor: Executor,
        *,
        max_sync_wait: float = 0,
        execution_timeout: float | None = None,
        log: ExecutionLog | None = None,
        callback_hosts: tuple[str, ...] | None = None,
    ) -> None:
        """`max_sync_wait`: seconds a sync call waits at most before it answers the execution
        in its current state (it goes on); 0 is no bound. `execution_timeout`: seconds an
        execution of a workflow that sets no timeout of its own may be RUNNING. `log`: where
        `events` replays an execution's log from. `callback_hosts`: the hosts a run may name
        in `callback_url` (None: completion callbacks are not configured)."""
        self._log = log
        self._callback_hosts = callback_hosts
        self._lookup = lookup
        self._executor = executor
        self._max_sync_wait = max_sync_wait
        self._execution_timeout = execution_timeout

    async def call(
        self,
        principal: Principal,
        target: Target,
        body: Any,
        *,
        version: int | None = None,
        wait: bool = True,
        wait_at_most: float | None = None,
        execution_id: str | None = None,
        callback_url: str | None = None,
    ) -> Execution:
        """Run the workflow behind `target` on `body`. With `wait`, returns once the execution
        completes, fails, is cancelled or pauses, or after `wait_at_most` seconds (and the
        server's `max_sync_wait`) in its current state; otherwise as soon as it is stored.
        `execution_id`: the id to give the execution (`AlreadyExists` when it is taken).
        `callback_url`: where its outcome is POSTed (refused, before anything else, unless
        callbacks are configured and its host is allowed)."""
        if callback_url is not None:
            callbacks.check_callback_url(callback_url, self._callback_hosts)
        pinned = await self._version(target, version)
        permissions.require(principal, permissions.run_permission(pinned.info.ref))
        if pinned.info.input_schema is not None:
            schema.check(pinned.info.input_schema, body)  # 422 before anything is stored
        launch = Launch(
            execution_id=execution_id,
            service=target.service,
            callback_url=callback_url,
            timeout=pinned.info.timeout or self._execution_timeout,
        )
        if not wait:
            return await self._executor.start(pinned, body, launch)
        bound = self._bound(wait_at_most)
        if bound is None:
            return await self._executor.run(pinned, body, launch)
        # The sync run itself (stored RUNNING, no history kept), waited for at most `bound`.
        stored: list[Execution] = []
        running = _detachable(self._executor.run(pinned, body, launch, started=stored.append))
        return await self._at_most(
            bound, running, lambda: stored[0].execution_id if stored else None
        )

    async def resume(
        self,
        principal: Principal,
        target: Target,
        execution_id: str,
        body: Any,
        *,
        wait: bool = True,
        wait_at_most: float | None = None,
    ) -> Execution:
        """Answer the pending pause of a PAUSED execution of `target` with `body`; a sync
        resume waits as `call` does."""
        await self._owned(principal, target, execution_id)
        bound = self._bound(wait_at_most) if wait else None
        if bound is None:
            return await self._executor.resume(execution_id, body, wait=wait)
        resuming = _detachable(self._executor.resume(execution_id, body, wait=True))
        return await self._at_most(bound, resuming, lambda: execution_id)

    async def status(self, principal: Principal, target: Target, execution_id: str) -> Execution:
        return await self._owned(principal, target, execution_id)

    async def attach(
        self,
        principal: Principal,
        target: Target,
        execution_id: str,
        *,
        wait: bool = True,
        wait_at_most: float | None = None,
    ) -> Execution:
        """An existing execution of `target` as a call of it is answered (a retry of that call):
        with `wait`, once it settles, bounded as `call` is; otherwise as it is now."""
        execution = await self._owned(principal, target, execution_id)
        if not wait or execution.state.ends_stream:
            return execution
        settled = _detachable(self._executor.wait(execution_id))
        bound = self._bound(wait_at_most)
        if bound is None:
            return await settled
        return await self._at_most(bound, settled, lambda: execution_id)

    async def cancel(self, principal: Principal, target: Target, execution_id: str) -> Execution:
        await self._owned(principal, target, execution_id)
        return await self._executor.cancel(execution_id)

    async def watch(
        self, principal: Principal, target: Target, execution_id: str
    ) -> AsyncGenerator[StreamItem, None]:
        """The execution's progress (state changes and task events) until its stream ends."""
        await self._owned(principal, target, execution_id)
        async for item in self._executor.watch(execution_id):
            yield item

    async def events(
        self, principal: Principal, target: Target, execution_id: str, *, after: int = 0
    ) -> AsyncGenerator[StreamItem, None]:
        """An existing execution's stream from its log (the items past seq `after`), then live
        until it ends; starts nothing. Checked as `status` is before anything is streamed."""
        await self._owned(principal, target, execution_id)
        if self._log is None:
            raise RuntimeError("these calls were set up without the execution log")
        return events_after(self._executor, self._log, execution_id, after)

    # -- bounded waits ---------------------------------------------------------------------

    def _bound(self, wait_at_most: float | None) -> float | None:
        bounds = [b for b in (wait_at_most, self._max_sync_wait or None) if b is not None]
        return min(bounds) if bounds else None

    async def _at_most(
        self,
        bound: float,
        settling: asyncio.Future[Execution],
        execution_id: Callable[[], str | None],
    ) -> Execution:
        """`settling`'s outcome if it comes within `bound` seconds, else the execution as it is
        then (it goes on); `execution_id` tells which one that is (None: not even stored yet,
        so there is nothing to answer with but the outcome)."""
        try:
            return await asyncio.wait_for(asyncio.shield(settling), bound)
        except TimeoutError:
            known = execution_id()
            if known is None:
                return await settling
            return await self._executor.get(known)

    # -- checks ------------------------------------------------------------------------------

    async def _version(self, target: Target, version: int | None) -> WorkflowVersion:
        if target.ref is not None:
            return await self._lookup.version(target.ref, version)
        assert target.service is not None and target.endpoint is not None
        return await self._lookup.endpoint_version(target.service, target.endpoint, version)

    async def _ref(self, target: Target) -> WorkflowRef:
        if target.ref is not None:
            return target.ref
        assert target.service is not None and target.endpoint is not None
        resolution = await self._lookup.resolution(target.service)
        return find_endpoint(resolution, target.endpoint).workflow.ref

    async def _owned(self, principal: Principal, target: Target, execution_id: str) -> Execution:
        """The execution, once the caller may run `target` and the execution is one of its runs
        (an execution of another workflow is not found through this target)."""
        ref = await self._ref(target)
        permissions.require(principal, permissions.run_permission(ref))
        execution = await self._executor.get(execution_id)
        if execution.ref != ref:
            raise ExecutionNotFound(
                f"execution '{execution_id}' not found for workflow '{ref}'",
                execution_id=execution_id,
            )
        return execution


def _detachable(call: Coroutine[Any, Any, Execution]) -> asyncio.Future[Execution]:
    """`call` as a task that may outlive its caller (a bound passed, a caller gone): its outcome
    is then nobody's, and must not be reported as never retrieved."""
    task = asyncio.ensure_future(call)
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    return task
