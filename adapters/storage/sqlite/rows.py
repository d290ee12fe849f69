"""Conversions between core values and SQLite rows (JSON text columns via `json`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from core.model import (
    EventKind,
    Execution,
    ExecutionError,
    ExecutionEvent,
    ExecutionState,
    ServiceDefinition,
    WorkflowInfo,
    WorkflowRef,
)

_ENCODER = json.JSONEncoder(separators=(",", ":"))  # made once: json.dumps builds one per call


def dump(value: Any) -> str | None:
    return None if value is None else _ENCODER.encode(value)


def load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _ref(text: str) -> WorkflowRef:
    namespace, _, name = text.rpartition("/")
    return WorkflowRef(namespace, name)


def info_from_row(row: Sequence[Any]) -> WorkflowInfo:
    """(namespace, name, version, input_schema, description, timeout)"""
    namespace, name, version, schema, description, timeout = row
    return WorkflowInfo(WorkflowRef(namespace, name), version, load(schema), description, timeout)


def service_to_params(service: ServiceDefinition) -> dict[str, Any]:
    return {
        "name": service.name,
        "namespaces": dump(list(service.namespaces)),
        "workflows": dump([str(ref) for ref in service.workflows]),
        "exclusions": dump([str(ref) for ref in service.exclusions]),
        "mcp_enabled": int(service.mcp_enabled),
        "revision": service.revision,
    }


SERVICE_COLUMNS = "name, namespaces, workflows, exclusions, mcp_enabled, revision"


def service_from_row(row: Sequence[Any]) -> ServiceDefinition:
    name, namespaces, workflows, exclusions, mcp_enabled, revision = row
    return ServiceDefinition(
        name=name,
        namespaces=tuple(load(namespaces)),
        workflows=tuple(_ref(text) for text in load(workflows)),
        exclusions=tuple(_ref(text) for text in load(exclusions)),
        mcp_enabled=bool(mcp_enabled),
        revision=revision,
    )


EXECUTION_COLUMNS = (
    "id, namespace, name, version, state, input, output, error, pause_name, created_at, "
    "updated_at, service, deadline, time_left, callback_url"
)


def execution_to_params(execution: Execution) -> tuple[Any, ...]:
    error = execution.error
    return (
        execution.execution_id,
        execution.ref.namespace,
        execution.ref.name,
        execution.version,
        str(execution.state),
        dump(execution.input),
        dump(execution.output),
        None if error is None else dump(error.as_json()),
        execution.pause_name,
        execution.created_at,
        execution.updated_at,
        execution.service,
        execution.deadline,
        execution.time_left,
        execution.callback_url,
    )


# The columns a save writes, and their values in the order of `STATE_UPDATE`'s placeholders.
STATE_UPDATE = (
    "state = ?, output = ?, error = ?, pause_name = ?, updated_at = ?, deadline = ?, time_left = ?"
)


def execution_state_params(execution: Execution) -> tuple[Any, ...]:
    """(state, output, error, pause_name, updated_at, deadline, time_left, id): a save's
    values, id last."""
    error = execution.error
    return (
        str(execution.state),
        dump(execution.output),
        None if error is None else dump(error.as_json()),
        execution.pause_name,
        execution.updated_at,
        execution.deadline,
        execution.time_left,
        execution.execution_id,
    )


def execution_from_row(row: Sequence[Any]) -> Execution:
    (id_, namespace, name, version, state, input_, output, error, pause, created, updated) = row[
        :11
    ]
    service, deadline, time_left, callback_url = row[11:]
    failure = load(error)
    return Execution(
        execution_id=id_,
        ref=WorkflowRef(namespace, name),
        version=version,
        state=ExecutionState(state),
        input=load(input_),
        output=load(output),
        error=None if failure is None else ExecutionError(failure["type"], failure["message"]),
        pause_name=pause,
        created_at=created,
        updated_at=updated,
        service=service,
        deadline=deadline,
        time_left=time_left,
        callback_url=callback_url,
    )


EVENT_COLUMNS = "execution_id, seq, kind, key, value, at"


def event_to_params(event: ExecutionEvent) -> tuple[Any, ...]:
    return (
        event.execution_id,
        event.seq,
        str(event.kind),
        event.key,
        dump(event.value),
        event.at,
    )


def event_from_row(row: Sequence[Any]) -> ExecutionEvent:
    execution_id, seq, kind, key, value, at = row
    return ExecutionEvent(execution_id, seq, EventKind(kind), key, load(value), at)
