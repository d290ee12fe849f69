"""In-memory storage: the twin that proves the storage contract, never what a user runs.

Every method runs without awaiting anything between its read and its write, so on one event loop
each call is atomic; that is what gives `update` its read-modify-write guarantee here. JSON values
are round-tripped through `json` on the way in, so this twin hands back the same shapes (lists,
not tuples) and rejects the same non-JSON values as the SQLite adapter. Execution writes signal
their listeners (`signals`) as soon as they are stored.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from attrs import evolve

from adapters.storage import text
from adapters.storage.api_keys import MemoryApiKeyStore
from adapters.storage.idempotency import MemoryIdempotencyKeys
from adapters.storage.local_signals import LocalSignals
from adapters.storage.memory_outbox import MemoryOutbox
from adapters.storage.memory_queries import MemoryQueries
from adapters.storage.memory_retention import MemoryRetention
from core.errors import AlreadyExists, ServiceNotFound
from core.model import (
    IN_PROGRESS,
    CatalogSnapshot,
    Execution,
    ExecutionEvent,
    ExecutionState,
    ServiceDefinition,
    WorkflowInfo,
    WorkflowRef,
    WorkflowVersion,
)
from ports.catalog import NewWorkflow, Registered
from ports.storage import Storage

Clock = Callable[[], float]


def _copy_json(value: Any) -> Any:
    return None if value is None else json.loads(json.dumps(value))


class MemoryCatalog:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._versions: dict[WorkflowRef, list[WorkflowVersion]] = {}
        self._heads: dict[WorkflowRef, int] = {}  # highest version ever given: kept on delete
        self._revision = 0
        self._snapshot: CatalogSnapshot | None = None

    async def register(self, workflows: Sequence[NewWorkflow]) -> list[Registered]:
        text.check_workflows(workflows)
        results: list[Registered] = []
        changed = False
        now = self._clock()
        for new in workflows:
            history = self._versions.setdefault(new.ref, [])
            latest = history[-1] if history else None
            if latest is not None and latest.source_hash == new.source_hash:
                results.append(Registered(latest.info, created=False))
                continue
            version = max(latest.info.version if latest else 0, self._heads.get(new.ref, 0)) + 1
            self._heads[new.ref] = version
            info = WorkflowInfo(
                ref=new.ref,
                version=version,
                input_schema=_copy_json(new.input_schema),
                description=new.description,
                timeout=new.timeout,
            )
            history.append(WorkflowVersion(info, new.source, new.source_hash, now))
            results.append(Registered(info, created=True))
            changed = True
        if changed:
            self._bump()
        return results

    async def revision(self) -> int:
        return self._revision

    async def snapshot(self) -> CatalogSnapshot:
        if self._snapshot is None or self._snapshot.revision != self._revision:
            self._snapshot = CatalogSnapshot(self._revision, tuple(self._latest(None)))
        return self._snapshot

    async def get(self, ref: WorkflowRef, version: int | None = None) -> WorkflowVersion | None:
        history = self._versions.get(ref)
        if not history:
            return None
        if version is None:
            return history[-1]
        return next((v for v in history if v.info.version == version), None)

    async def versions(self, ref: WorkflowRef) -> list[WorkflowInfo]:
        return [v.info for v in self._versions.get(ref, ())]

    async def list(self, namespace: str | None = None) -> list[WorkflowInfo]:
        return [*self._latest(namespace)]

    async def delete(self, ref: WorkflowRef, version: int | None = None) -> int:
        history = self._versions.get(ref, [])
        kept = [] if version is None else [v for v in history if v.info.version != version]
        removed = len(history) - len(kept)
        if kept:
            self._versions[ref] = kept
        else:
            self._versions.pop(ref, None)
        if removed:
            self._bump()
        return removed

    def _latest(self, namespace: str | None) -> Iterator[WorkflowInfo]:
        # An iterator, not a list: inside this class `list` names the method above.
        return (
            history[-1].info
            for ref, history in sorted(self._versions.items())
            if history and (namespace is None or ref.namespace == namespace)
        )

    def _bump(self) -> None:
        self._revision += 1


class MemoryServiceStore:
    def __init__(self) -> None:
        self._services: dict[str, ServiceDefinition] = {}
        self._revision = 0

    async def create(self, service: ServiceDefinition) -> ServiceDefinition:
        text.check_service(service)
        if service.name in self._services:
            raise AlreadyExists(f"service {service.name!r} already exists", service=service.name)
        self._services[service.name] = service
        self._revision += 1
        return service

    async def get(self, name: str) -> ServiceDefinition | None:
        return self._services.get(name)

    async def list(self) -> list[ServiceDefinition]:
        return [self._services[name] for name in sorted(self._services)]

    async def update(
        self, name: str, edit: Callable[[ServiceDefinition], ServiceDefinition]
    ) -> ServiceDefinition:
        current = self._services.get(name)
        if current is None:
            raise ServiceNotFound(f"service {name!r} not found", service=name)
        # The name is the key and the revision belongs to the store, whatever `edit` returns.
        updated = evolve(edit(current), name=name, revision=current.revision + 1)
        text.check_service(updated)
        self._services[name] = updated
        self._revision += 1
        return updated

    async def delete(self, name: str) -> bool:
        if self._services.pop(name, None) is None:
            return False
        self._revision += 1
        return True

    async def revision(self) -> int:
        return self._revision


# States whose executions still need their code, and may have a deadline.
UNFINISHED_STATES = (*IN_PROGRESS, ExecutionState.PAUSED)


class MemoryExecutionStore:
    def __init__(self, signals: LocalSignals) -> None:
        self._executions: dict[str, Execution] = {}
        self._events: dict[str, dict[int, ExecutionEvent]] = {}
        self._leases: dict[str, tuple[str, float]] = {}  # execution id -> (owner, until)
        self._signals = signals
        self.outbox = MemoryOutbox()  # its deliveries are written by `save`

    async def create(self, execution: Execution) -> None:
        text.check_execution(execution)
        if execution.execution_id in self._executions:
            raise AlreadyExists(
                f"execution {execution.execution_id!r} already exists",
                execution_id=execution.execution_id,
            )
        self._executions[execution.execution_id] = _stored_execution(execution)
        self._signal_stored(execution)

    async def save(self, execution: Execution, events: Sequence[ExecutionEvent] = ()) -> None:
        text.check_execution(execution)
        text.check_events(events)
        existing = self._executions.get(execution.execution_id)
        if existing is not None:  # a save writes the state; the run's identity stays
            execution = evolve(
                existing,
                state=execution.state,
                output=execution.output,
                error=execution.error,
                pause_name=execution.pause_name,
                updated_at=execution.updated_at,
                deadline=execution.deadline,
                time_left=execution.time_left,
            )
        stored = _stored_execution(execution)
        copies = self._checked_events(events)
        self._executions[execution.execution_id] = stored
        self._add(copies)
        self.outbox.keep(execution, existing)  # with the state, as a transaction would
        self._signal_stored(execution)

    async def append(self, events: Sequence[ExecutionEvent]) -> None:
        text.check_events(events)
        self._add(self._checked_events(events))
        for execution_id in dict.fromkeys(event.execution_id for event in events):
            self._signals.changed(execution_id)

    async def get(self, execution_id: str) -> Execution | None:
        return self._executions.get(execution_id)

    async def events(self, execution_id: str) -> list[ExecutionEvent]:
        log = self._events.get(execution_id, {})
        return [log[seq] for seq in sorted(log)]

    async def in_states(self, states: Sequence[ExecutionState]) -> list[Execution]:
        wanted = set(states)
        found = [e for e in self._executions.values() if e.state in wanted]
        return sorted(found, key=lambda e: (e.created_at, e.execution_id))

    async def save_if(
        self,
        execution: Execution,
        events: Sequence[ExecutionEvent],
        expected: Sequence[ExecutionState],
    ) -> bool:
        stored = self._executions.get(execution.execution_id)
        if stored is None or stored.state not in expected:
            return False
        await self.save(execution, events)  # no await inside: nothing runs in between
        if not execution.state.in_progress:
            self._leases.pop(execution.execution_id, None)
        return True

    async def overdue(self, now: float, limit: int) -> list[Execution]:
        found = [
            e
            for e in await self.in_states(UNFINISHED_STATES)
            if e.deadline is not None and e.deadline <= now
        ]
        return sorted(found, key=lambda e: (e.deadline, e.execution_id))[: max(0, limit)]

    async def unfinished(self, ref: WorkflowRef, version: int | None = None) -> list[str]:
        wanted = UNFINISHED_STATES
        return [
            e.execution_id
            for e in await self.in_states(wanted)
            if e.ref == ref and (version is None or e.version == version)
        ]

    async def claim(self, owner: str, *, limit: int, lease: float, now: float) -> list[Execution]:
        claimable = [
            e
            for e in await self.in_states(IN_PROGRESS)
            if e.execution_id not in self._leases or self._leases[e.execution_id][1] < now
        ]
        taken = claimable[: max(0, limit)]
        for execution in taken:
            self._leases[execution.execution_id] = (owner, now + lease)
        return taken

    async def renew(
        self, owner: str, execution_ids: Sequence[str], *, lease: float, now: float
    ) -> list[str]:
        held = [i for i in dict.fromkeys(execution_ids) if self._owns(owner, i)]
        for execution_id in held:
            self._leases[execution_id] = (owner, now + lease)
        return held

    async def release(self, owner: str, execution_ids: Sequence[str]) -> None:
        released = False
        for execution_id in execution_ids:
            if self._leases.get(execution_id, ("", 0))[0] == owner:
                del self._leases[execution_id]
                released = True
        if released:
            self._signals.claimable()

    async def save_owned(
        self, owner: str, execution: Execution, events: Sequence[ExecutionEvent] = ()
    ) -> bool:
        if not self._owns(owner, execution.execution_id):
            return False
        await self.save(execution, events)
        if not execution.state.in_progress:
            del self._leases[execution.execution_id]
        return True

    async def append_owned(self, owner: str, events: Sequence[ExecutionEvent]) -> bool:
        if not all(self._owns(owner, event.execution_id) for event in events):
            return False
        await self.append(events)
        return True

    def forget(self, execution_ids: Sequence[str]) -> None:
        """Drop these executions with their logs and leases: the retention purge's delete."""
        for execution_id in execution_ids:
            self._executions.pop(execution_id, None)
            self._events.pop(execution_id, None)
            self._leases.pop(execution_id, None)
        self.outbox.forget(set(execution_ids))

    def _signal_stored(self, execution: Execution) -> None:
        self._signals.changed(execution.execution_id)
        if execution.state.in_progress and execution.execution_id not in self._leases:
            self._signals.claimable()

    def _owns(self, owner: str, execution_id: str) -> bool:
        execution = self._executions.get(execution_id)
        lease = self._leases.get(execution_id)
        return (
            execution is not None
            and execution.state.in_progress
            and lease is not None
            and lease[0] == owner
        )

    def _checked_events(self, events: Sequence[ExecutionEvent]) -> list[ExecutionEvent]:
        # Check the whole batch before writing any of it: the SQLite twin writes all or nothing.
        copies = [evolve(event, value=_copy_json(event.value)) for event in events]
        seen: set[tuple[str, int]] = set()
        for event in copies:
            key = (event.execution_id, event.seq)
            if key in seen or event.seq in self._events.get(event.execution_id, {}):
                raise AlreadyExists(
                    f"event {event.seq} of execution {event.execution_id!r} already exists",
                    execution_id=event.execution_id,
                    seq=event.seq,
                )
            seen.add(key)
        return copies

    def _add(self, events: list[ExecutionEvent]) -> None:
        for event in events:
            self._events.setdefault(event.execution_id, {})[event.seq] = event


def _stored_execution(execution: Execution) -> Execution:
    return evolve(execution, input=_copy_json(execution.input), output=_copy_json(execution.output))


class MemoryRevisions:
    def __init__(self, services: MemoryServiceStore, catalog: MemoryCatalog) -> None:
        self._services = services
        self._catalog = catalog

    async def current(self) -> tuple[int, int]:
        return await self._services.revision(), await self._catalog.revision()


class MemoryStorage:
    """The storage ports over plain dicts, one attribute per port."""

    def __init__(self, clock: Clock = time.time) -> None:
        self.catalog = MemoryCatalog(clock)
        self.services = MemoryServiceStore()
        self.signals = LocalSignals()
        self.executions = MemoryExecutionStore(self.signals)
        # One class for both ports: a lease check and the write it guards share one dict.
        self.leases = self.executions
        self.workflow_executions = self.executions
        self.queries = MemoryQueries(lambda: self.executions._executions.values())
        self.revisions = MemoryRevisions(self.services, self.catalog)
        self.api_keys = MemoryApiKeyStore()
        self.idempotency = MemoryIdempotencyKeys()
        self.retention = MemoryRetention(self.executions, self.idempotency)
        self.outbox = self.executions.outbox

    async def health(self) -> str:
        return "ok"

    async def close(self) -> None:
        return None


def _fits(storage: MemoryStorage) -> Storage:
    """Never called: mypy checks here that `MemoryStorage` offers every storage port."""
    return storage
