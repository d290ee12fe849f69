"""Immutable values that cross every boundary of the system.

Everything here is an attrs frozen class (or an enum). JSON conversion happens at the edges
through `core.convert`; nothing in this module does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen

from core.errors import InvalidName
from core.names import DEFAULT_NAMESPACE, validate_namespace, validate_workflow_name

JSON = Any  # a value json.dumps accepts


@frozen(order=True)
class WorkflowRef:
    """`namespace/name`; a bare `name` means `default/name`."""

    namespace: str
    name: str

    @classmethod
    def parse(cls, text: str) -> WorkflowRef:
        """Parse and validate a ref; raises `InvalidName` with the reason."""
        if not isinstance(text, str):
            raise InvalidName(f"workflow ref must be a string, got {type(text).__name__}")
        if text.count("/") > 1:
            raise InvalidName(f"invalid workflow ref {text!r}: expected 'namespace/name'")
        namespace, _, name = text.rpartition("/")
        namespace = namespace if "/" in text else DEFAULT_NAMESPACE
        return cls(validate_namespace(namespace), validate_workflow_name(name))

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@frozen
class WorkflowInfo:
    """Metadata of one version of a registered workflow (no source)."""

    ref: WorkflowRef
    version: int
    input_schema: Mapping[str, Any] | None = None  # None: untyped input
    description: str = ""
    # Seconds an execution may be RUNNING (`@workflow.with_options(timeout=...)`); None: the
    # server's `execution_timeout`.
    timeout: float | None = None


@frozen
class WorkflowVersion:
    """One stored version of a workflow, with its module source."""

    info: WorkflowInfo
    source: str
    source_hash: str
    created_at: float = 0.0


@frozen
class CatalogSnapshot:
    """The latest version of every registered workflow, at a catalog revision."""

    revision: int
    workflows: tuple[WorkflowInfo, ...] = ()
    _by_namespace: Mapping[str, tuple[WorkflowInfo, ...]] = field(
        init=False, repr=False, eq=False, hash=False
    )
    _by_ref: Mapping[WorkflowRef, WorkflowInfo] = field(
        init=False, repr=False, eq=False, hash=False
    )

    def __attrs_post_init__(self) -> None:
        by_ns: dict[str, list[WorkflowInfo]] = {}
        by_ref: dict[WorkflowRef, WorkflowInfo] = {}
        for info in self.workflows:
            by_ns.setdefault(info.ref.namespace, []).append(info)
            by_ref[info.ref] = info
        object.__setattr__(self, "_by_namespace", {k: tuple(v) for k, v in by_ns.items()})
        object.__setattr__(self, "_by_ref", by_ref)

    def in_namespace(self, namespace: str) -> tuple[WorkflowInfo, ...]:
        return self._by_namespace.get(namespace, ())

    def get(self, ref: WorkflowRef) -> WorkflowInfo | None:
        return self._by_ref.get(ref)


@frozen
class ServiceDefinition:
    """A named set of selectors. Selectors are kept sorted and unique so equal services compare equal."""

    name: str
    namespaces: tuple[str, ...] = ()
    workflows: tuple[WorkflowRef, ...] = ()
    exclusions: tuple[WorkflowRef, ...] = ()
    mcp_enabled: bool = False
    revision: int = 1


@frozen
class Endpoint:
    """A workflow exposed by a service under `name` (the workflow's own name)."""

    name: str
    workflow: WorkflowInfo


@frozen
class Collision:
    """Two or more namespaces contribute the same endpoint name."""

    name: str
    refs: tuple[WorkflowRef, ...]

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(ref.namespace for ref in self.refs)


@frozen
class Resolution:
    """What a service exposes against one catalog snapshot. All tuples sorted by name."""

    service: ServiceDefinition
    catalog_revision: int
    endpoints: tuple[Endpoint, ...] = ()
    collisions: tuple[Collision, ...] = ()
    unresolved: tuple[WorkflowRef, ...] = ()

    def lookup(self, name: str) -> Endpoint | Collision | None:
        for endpoint in self.endpoints:
            if endpoint.name == name:
                return endpoint
        for collision in self.collisions:
            if collision.name == name:
                return collision
        return None


class ExecutionState(enum.StrEnum):
    CREATED = "CREATED"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self in (ExecutionState.COMPLETED, ExecutionState.FAILED, ExecutionState.CANCELLED)

    @property
    def ends_stream(self) -> bool:
        return self.is_final or self is ExecutionState.PAUSED

    @property
    def in_progress(self) -> bool:
        """Created or running: what recovery replays and what a worker may lease."""
        return self in IN_PROGRESS


IN_PROGRESS = (ExecutionState.CREATED, ExecutionState.RUNNING)


@frozen
class ExecutionError:
    type: str
    message: str

    def as_json(self) -> dict[str, str]:
        """The shape an error has in responses, logs and stored rows."""
        return {"type": self.type, "message": self.message}


@frozen
class Execution:
    """One run of one workflow version. `output` is the last pause output while PAUSED."""

    execution_id: str
    ref: WorkflowRef
    version: int
    state: ExecutionState
    input: JSON = None
    output: JSON = None
    error: ExecutionError | None = None
    pause_name: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    # The service whose endpoint started it (None: by ref, or by an embedding application).
    service: str | None = None
    # Epoch seconds at which the execution fails if it is still in the state it is in: RUNNING
    # (or CREATED) past it is a `WorkflowTimeout`, PAUSED past it a `PauseTimeout`; None: never.
    deadline: float | None = None
    # While PAUSED: the seconds of running time the workflow has left (paused time does not
    # count against its timeout); None otherwise.
    time_left: float | None = None
    # Where the outcome is POSTed when the execution completes, fails, is cancelled or pauses.
    callback_url: str | None = None


@frozen
class Launch:
    """How a new execution is started, beyond its workflow and input."""

    execution_id: str | None = None  # chosen by the caller (an idempotent call); None: a new one
    service: str | None = None  # the service whose endpoint was called
    callback_url: str | None = None  # told the outcome (Flux-Callback-Url)
    timeout: float | None = None  # seconds it may be RUNNING; None: no deadline


NO_LAUNCH = Launch()


class EventKind(enum.StrEnum):
    STATE = "state"  # value: the new state name
    TASK_STARTED = "task_started"
    TASK_COMPLETED = "task_completed"  # value: the task's result (replayed on resume)
    TASK_FAILED = "task_failed"  # value: {"type", "message"}
    PAUSED = "paused"  # key: the pause point; value: the pause output
    RESUMED = "resumed"  # key: the pause point; value: the resume body (replayed on resume)
    WORKER_LOST = "worker_lost"  # value: {"pid", "reason"}; the run goes on on another worker


@frozen
class ExecutionEvent:
    """One entry of an execution's durable log. `key` identifies a task call or pause point
    deterministically within a run (e.g. `price#0`), so a replay finds the same key again."""

    execution_id: str
    seq: int
    kind: EventKind
    key: str = ""
    value: JSON = None
    at: float = 0.0
