"""A local worker process's view of its server: the ports `ExecutionWorker` needs (execution
log, leases, signals, workflow versions), answered over the link (engine/wire.py).

The server assigns work instead of the worker claiming it from a database: `claim` hands out
what the server pushed, with each execution's log, so starting a run costs no round trip. Every
write is a request the server answers only once it is durable; a lease the server no longer
grants (the execution was cancelled, or given to another worker) answers False, as a database
lease check would. The worker code is the same one `flux start worker` runs on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from core.model import Execution, ExecutionEvent, ExecutionState, WorkflowRef, WorkflowVersion
from engine import wire
from ports.executions import Listener

log = logging.getLogger("flux.worker")

Revoke = Callable[[Sequence[str]], None]


class _Wake:
    """A `Listener` set whenever the server pushes work."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.closed = False

    async def wait(self, timeout: float) -> bool:
        if self.closed:
            await asyncio.sleep(timeout)
            return False
        try:
            await asyncio.wait_for(self.event.wait(), timeout)
        except TimeoutError:
            return False
        self.event.clear()
        return True

    def close(self) -> None:
        self.closed = True


class ServerLink:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = wire.FrameWriter(writer)
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._assigned: deque[Execution] = deque()
        self._logs: dict[str, list[ExecutionEvent]] = {}
        self._versions: dict[tuple[WorkflowRef, int], WorkflowVersion] = {}
        self._watched: set[str] = set()
        self._wakes: list[_Wake] = []
        self.on_revoke: Revoke | None = None
        self.closed = asyncio.Event()

    @classmethod
    async def over_socket(cls, fd: int) -> ServerLink:
        import socket

        sock = socket.socket(fileno=fd)
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        return cls(reader, writer)

    async def serve(self) -> None:
        """Say this worker is ready, then read the server's frames until the link closes."""
        self.tell("ready")
        try:
            while True:
                self._receive(await wire.read_frame(self._reader))
        except wire.LinkClosed as exc:
            log.info("the server link closed (%s)", exc)
        finally:
            self.closed.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(wire.LinkClosed("the server has gone"))
            self._pending.clear()

    def _receive(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "reply":
            future = self._pending.pop(message["rid"], None)
            if future is not None and not future.done():
                if "error" in message:
                    future.set_exception(RuntimeError(message["error"]))
                else:
                    future.set_result(message.get("value"))
        elif op == "assign":
            for item in message["runs"]:
                execution = wire.execution_in(item["execution"])
                self._logs[execution.execution_id] = wire.events_in(item["log"])
                if item.get("watched"):
                    self._watched.add(execution.execution_id)
                self._assigned.append(execution)
            for wake in self._wakes:
                wake.event.set()
        elif op == "revoke" and self.on_revoke is not None:
            self.on_revoke(list(message["ids"]))

    async def _ask(self, op: str, **fields: Any) -> Any:
        if self.closed.is_set():
            raise wire.LinkClosed("the server has gone")
        rid = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        self._writer.send({"op": op, "rid": rid, **fields})
        return await future

    def tell(self, op: str, **fields: Any) -> None:
        if not self.closed.is_set():
            self._writer.send({"op": op, **fields})

    # -- ports.executions.ExecutionLog (what a leased view reads) -------------------------

    async def create(self, execution: Execution) -> None:
        raise RuntimeError("a local worker does not create executions")

    async def save(self, execution: Execution, events: Sequence[ExecutionEvent] = ()) -> None:
        raise RuntimeError("a local worker writes through its leases only")

    async def append(self, events: Sequence[ExecutionEvent]) -> None:
        raise RuntimeError("a local worker writes through its leases only")

    async def save_if(
        self,
        execution: Execution,
        events: Sequence[ExecutionEvent],
        expected: Sequence[ExecutionState],
    ) -> bool:
        raise RuntimeError("a local worker writes through its leases only")

    async def overdue(self, now: float, limit: int) -> list[Execution]:
        raise RuntimeError("the server enforces the deadlines of what nobody runs")

    async def get(self, execution_id: str) -> Execution | None:
        found = await self._ask("get", id=execution_id)
        return None if found is None else wire.execution_in(found)

    async def events(self, execution_id: str) -> list[ExecutionEvent]:
        sent = self._logs.pop(execution_id, None)
        if sent is not None:
            return sent  # came with the assignment: no round trip
        return wire.events_in(await self._ask("events", id=execution_id))

    async def in_states(self, states: Sequence[ExecutionState]) -> list[Execution]:
        raise RuntimeError("a local worker recovers what it is assigned only")

    # -- ports.executions.Leases ----------------------------------------------------------

    async def claim(self, owner: str, *, limit: int, lease: float, now: float) -> list[Execution]:
        taken: list[Execution] = []
        while self._assigned and len(taken) < limit:
            taken.append(self._assigned.popleft())
        return taken

    async def renew(
        self, owner: str, execution_ids: Sequence[str], *, lease: float, now: float
    ) -> list[str]:
        return list(await self._ask("renew", ids=list(execution_ids)))

    async def release(self, owner: str, execution_ids: Sequence[str]) -> None:
        await self._ask("release", ids=list(execution_ids))

    async def save_owned(
        self, owner: str, execution: Execution, events: Sequence[ExecutionEvent] = ()
    ) -> bool:
        if not execution.state.in_progress:
            self._watched.discard(execution.execution_id)
        return bool(
            await self._ask(
                "save",
                execution=wire.execution_out(execution),
                events=[wire.event_out(event) for event in events],
            )
        )

    async def append_owned(self, owner: str, events: Sequence[ExecutionEvent]) -> bool:
        return bool(await self._ask("append", events=[wire.event_out(e) for e in events]))

    # -- ports.executions.ExecutionSignals ------------------------------------------------

    async def listen(self, execution_id: str | None) -> Listener:
        wake = _Wake()
        self._wakes.append(wake)
        if self._assigned:
            wake.event.set()
        return wake

    # -- ports.executions.Progress --------------------------------------------------------

    def watched(self, execution_id: str) -> bool:
        return execution_id in self._watched

    def show(self, execution_id: str, events: Sequence[ExecutionEvent]) -> None:
        self.tell("show", id=execution_id, events=[wire.event_out(e) for e in events])

    # -- ports.catalog.WorkflowVersions ---------------------------------------------------

    async def get_version(self, ref: WorkflowRef, version: int) -> WorkflowVersion | None:
        key = (ref, version)
        found = self._versions.get(key)
        if found is None:
            sent = await self._ask("version", ref=str(ref), version=version)
            if sent is None:
                return None
            found = self._versions[key] = wire.version_in(sent)
        return found


class LinkedVersions:
    """`ports.catalog.WorkflowVersions` over the link (versions are kept once fetched: a
    version's source never changes)."""

    def __init__(self, link: ServerLink) -> None:
        self._link = link

    async def get(self, ref: WorkflowRef, version: int | None = None) -> WorkflowVersion | None:
        if version is None:
            raise ValueError("a local worker loads pinned versions only")
        return await self._link.get_version(ref, version)
