"""Conversions between core values and PostgreSQL rows, and the JSON codec of the pool.

Execution input/output/error and event values are JSONB (queryable from SQL); note that JSONB
keeps object keys in its own order, not the order they were written in. Input schemas are JSON
(text kept as written) because their property order is what users see in generated docs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg

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
from ports.auth import ApiKey

INFO_COLUMNS = "namespace, name, version, input_schema, description, timeout"
SERVICE_COLUMNS = "name, namespaces, workflows, exclusions, mcp_enabled, revision"
EXECUTION_COLUMNS = (
    "id, namespace, name, version, state, input, output, error, pause_name, created_at, "
    "updated_at, service, deadline, time_left, callback_url"
)
EVENT_COLUMNS = "execution_id, seq, kind, key, value, at"
API_KEY_COLUMNS = "key_id, name, permissions, revoked, created_at"
# What a save writes: the state of a run, never what identifies it (ref, version, input, ...).
STATE_UPDATE = (
    "state = $2, output = $3, error = $4, pause_name = $5, updated_at = $6, deadline = $7, "
    "time_left = $8"
)


def dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


async def init_connection(conn: asyncpg.Connection) -> None:
    # JSON and JSONB columns take and give Python values; SQL NULL stays None.
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=dump, decoder=json.loads, schema="pg_catalog", format="text"
        )


def affected(status: str) -> int:
    """Row count of a command status such as 'DELETE 3' or 'UPDATE 1'."""
    return int(status.rsplit(" ", 1)[-1])


def info(row: Sequence[Any]) -> WorkflowInfo:
    namespace, name, version, schema, description, timeout = row
    return WorkflowInfo(WorkflowRef(namespace, name), version, schema, description, timeout)


def _ref(text: str) -> WorkflowRef:
    namespace, _, name = text.rpartition("/")
    return WorkflowRef(namespace, name)


def service(row: Sequence[Any]) -> ServiceDefinition:
    name, namespaces, workflows, exclusions, mcp_enabled, revision = row
    return ServiceDefinition(
        name=name,
        namespaces=tuple(namespaces),
        workflows=tuple(_ref(text) for text in workflows),
        exclusions=tuple(_ref(text) for text in exclusions),
        mcp_enabled=mcp_enabled,
        revision=revision,
    )


def service_values(service: ServiceDefinition) -> tuple[Any, ...]:
    return (
        service.name,
        list(service.namespaces),
        [str(ref) for ref in service.workflows],
        [str(ref) for ref in service.exclusions],
        service.mcp_enabled,
        service.revision,
    )


def state_values(execution: Execution) -> tuple[Any, ...]:
    """The id ($1), then the values of `STATE_UPDATE`."""
    error = execution.error
    return (
        execution.execution_id,
        str(execution.state),
        execution.output,
        None if error is None else error.as_json(),
        execution.pause_name,
        execution.updated_at,
        execution.deadline,
        execution.time_left,
    )


def execution_values(execution: Execution) -> tuple[Any, ...]:
    error = execution.error
    return (
        execution.execution_id,
        execution.ref.namespace,
        execution.ref.name,
        execution.version,
        str(execution.state),
        execution.input,
        execution.output,
        None if error is None else error.as_json(),
        execution.pause_name,
        execution.created_at,
        execution.updated_at,
        execution.service,
        execution.deadline,
        execution.time_left,
        execution.callback_url,
    )


def execution(row: Sequence[Any]) -> Execution:
    (id_, namespace, name, version, state, input_, output, error, pause, created, updated) = row[
        :11
    ]
    service, deadline, time_left, callback_url = row[11:15]
    return Execution(
        execution_id=id_,
        ref=WorkflowRef(namespace, name),
        version=version,
        state=ExecutionState(state),
        input=input_,
        output=output,
        error=None if error is None else ExecutionError(error["type"], error["message"]),
        pause_name=pause,
        created_at=created,
        updated_at=updated,
        service=service,
        deadline=deadline,
        time_left=time_left,
        callback_url=callback_url,
    )


def event_values(event: ExecutionEvent) -> tuple[Any, ...]:
    return (event.execution_id, event.seq, str(event.kind), event.key, event.value, event.at)


def event(row: Sequence[Any]) -> ExecutionEvent:
    execution_id, seq, kind, key, value, at = row
    return ExecutionEvent(execution_id, seq, EventKind(kind), key, value, at)


def api_key(row: Sequence[Any]) -> ApiKey:
    key_id, name, permissions, revoked, created_at = row
    return ApiKey(
        key_id=key_id,
        name=name,
        permissions=frozenset(permissions),
        revoked=revoked,
        created_at=created_at,
    )
