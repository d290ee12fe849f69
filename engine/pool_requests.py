"""The requests a local worker process makes of its server, and what the server answers.

A worker writes through the server (save, append), reads through it (get, events, version),
renews its leases and gives runs back (release). Each write is checked against what the
worker holds and is answered only once durable; a refused write answers False, which the
worker takes as a lost lease. Part of the worker pool (engine/pool.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from core.model import IN_PROGRESS, EventKind, Execution, ExecutionEvent, WorkflowRef
from engine import wire
from engine.live import Shown, Watched
from engine.supervisor import Supervisor, WorkerProcess
from engine.tracking import Tracking
from ports.catalog import WorkflowVersions
from ports.executions import ExecutionLog

log = logging.getLogger("flux.workers")


class WorkerRequests:
    """What `LocalPool` answers its workers; the pool provides the state declared here."""

    _store: ExecutionLog
    _versions: WorkflowVersions
    _tracked: Tracking[Watched]
    _owner: dict[str, WorkerProcess]
    _tasks: set[asyncio.Task[Any]]
    _deadline: dict[str, float]
    supervisor: Supervisor
    _dispatch: Callable[[], None]
    _enqueue: Callable[[Execution, list[ExecutionEvent]], None]
    get: Callable[[str], Awaitable[Execution]]

    async def _serve(self, worker: WorkerProcess) -> None:
        assert worker.reader is not None
        while True:
            message = await wire.read_frame(worker.reader)
            op = message.get("op")
            if op == "renew":
                worker.last_renew = time.monotonic()
                worker.given_while_late.clear()  # it was not stuck after all
                held = [i for i in message["ids"] if i in worker.held]
                worker.send({"op": "reply", "rid": message["rid"], "value": held})
            elif op == "show":
                self._show(message)
            elif op == "ready":
                worker.ready = True
                self._dispatch()
            else:
                task = asyncio.get_running_loop().create_task(self._answer(worker, message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _answer(self, worker: WorkerProcess, message: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"op": "reply", "rid": message.get("rid")}
        try:
            reply["value"] = await self._handle(worker, message)
        except Exception as exc:
            log.exception("a request of worker process %d failed", worker.slot)
            reply["error"] = f"{type(exc).__name__}: {exc}"
        worker.send(reply)

    async def _handle(self, worker: WorkerProcess, message: dict[str, Any]) -> Any:
        op = message["op"]
        if op == "save":
            return await self._save(
                worker, wire.execution_in(message["execution"]), wire.events_in(message["events"])
            )
        if op == "append":
            events = wire.events_in(message["events"])
            if not events:
                return True
            if events[0].execution_id not in worker.held:
                return False
            await self._store.append(events)
            self._publish(events[0].execution_id, events)
            return True
        if op == "release":
            await self._release(worker, message["ids"])
            return None
        if op == "get":
            found = await self._store.get(message["id"])
            return None if found is None else wire.execution_out(found)
        if op == "events":
            return [wire.event_out(e) for e in await self._store.events(message["id"])]
        if op == "version":
            ref = WorkflowRef.parse(message["ref"])
            version = await self._versions.get(ref, message["version"])
            return None if version is None else wire.version_out(version)
        raise ValueError(f"unknown request {op!r}")

    async def _save(
        self, worker: WorkerProcess, execution: Execution, events: list[ExecutionEvent]
    ) -> bool:
        execution_id = execution.execution_id
        if execution_id not in worker.held:
            return False  # cancelled, or given to another worker: this one must stop
        # Conditional: a cancel or deadline that reads the execution while this write is on
        # its way may write first; then this one is refused, as a lost lease would be.
        if not await self._store.save_if(execution, events, IN_PROGRESS):
            return False
        self._publish(execution_id, events, execution)
        if not execution.state.in_progress:
            worker.held.discard(execution_id)
            self._deadline.pop(execution_id, None)
            self._owner.pop(execution_id, None)
            self._dispatch()
            tracked = self._tracked.get(execution_id)
            if tracked is not None:
                self._tracked.settle(tracked, execution)
        return True

    def _publish(
        self, execution_id: str, events: list[ExecutionEvent], execution: Execution | None = None
    ) -> None:
        """Show watchers what a worker wrote: its log events, then the state it is in (a state
        event is shown as the execution itself with the event's seq, as the runtime shows it)."""
        tracked = self._tracked.get(execution_id)
        if tracked is None:
            return
        items: list[Shown] = [e for e in events if e.kind is not EventKind.STATE]
        if execution is not None:
            tracked.execution = execution
            tracked.state_seq = max(
                (e.seq for e in events if e.kind is EventKind.STATE), default=tracked.state_seq
            )
            items.append(execution)
        if items:
            tracked.show(items)

    def _show(self, message: dict[str, Any]) -> None:
        tracked = self._tracked.get(message["id"])
        if tracked is not None:
            tracked.show(wire.events_in(message["events"]))

    async def _release(self, worker: WorkerProcess, ids: list[str]) -> None:
        """A stopping worker gives runs back: they go to another worker (none while the server
        itself stops: then they stay RUNNING on disk)."""
        for execution_id in ids:
            if execution_id in worker.held:
                worker.held.discard(execution_id)
                self._owner.pop(execution_id, None)
                execution = await self.get(execution_id)
                if not self.supervisor.stopping and execution.state.in_progress:
                    self._enqueue(execution, await self._store.events(execution_id))
