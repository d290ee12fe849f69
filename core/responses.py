"""Shapes of the HTTP answers (status and JSON body) for executions and errors.

`url_prefix` is the route of one workflow as the caller sees it, e.g.
`/services/billing/invoice` on the main server or `/invoice` on a standalone process; the
`status_url` and `resume_url` of an answer hang below it.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from core.errors import FluxError
from core.model import JSON, Execution, ExecutionEvent, ExecutionState

CallKind = Literal["run", "resume", "async", "status"]
CALL_KINDS: tuple[str, ...] = ("run", "resume", "async", "status")


def status_url(url_prefix: str, execution_id: str) -> str:
    return f"{url_prefix}/status/{execution_id}"


def resume_url(url_prefix: str, execution_id: str) -> str:
    return f"{url_prefix}/resume/{execution_id}"


def detailed_body(execution: Execution, url_prefix: str) -> dict[str, JSON]:
    """The detailed shape, with `resume_url` when paused and `error` when failed."""
    body: dict[str, JSON] = {
        "execution_id": execution.execution_id,
        "state": str(execution.state),
        "output": execution.output,
        "namespace": execution.ref.namespace,
        "workflow": execution.ref.name,
    }
    if execution.state is ExecutionState.PAUSED:
        body["resume_url"] = resume_url(url_prefix, execution.execution_id)
    if execution.state is ExecutionState.FAILED:
        error = execution.error
        body["error"] = (
            error.as_json()
            if error is not None
            else {"type": "WorkflowError", "message": "the workflow failed"}
        )
    return body


def shape_execution(
    execution: Execution, *, kind: CallKind, detailed: bool, url_prefix: str
) -> tuple[int, JSON]:
    """Status code and body for a run, resume, async start or status query."""
    if kind not in CALL_KINDS:
        raise ValueError(f"unknown call kind {kind!r}")
    body = detailed_body(execution, url_prefix)
    state = execution.state

    if kind == "status":
        return 200, body
    if kind == "async":
        body["status_url"] = status_url(url_prefix, execution.execution_id)
        return 202, body
    if state is ExecutionState.COMPLETED:
        return 200, body if detailed else execution.output
    if state is ExecutionState.FAILED:
        return 500, body
    if state is ExecutionState.CANCELLED:
        return 200, body
    if state is ExecutionState.PAUSED:
        return 202, body
    # A sync call that returns before the run settles (e.g. a wait limit) hands out a way to poll.
    body["status_url"] = status_url(url_prefix, execution.execution_id)
    return 202, body


def error_body(err: FluxError) -> dict[str, JSON]:
    """`{"error": code, "message": text, **details}`; details never hide the code or text."""
    body: dict[str, JSON] = {"error": err.code, "message": err.message}
    for key, value in err.details.items():
        body.setdefault(key, value)
    return body


# -- stream mode (text/event-stream) -------------------------------------------------------------


def event_payload(event: ExecutionEvent) -> dict[str, JSON]:
    """`data` of a non-state stream event."""
    return {"execution_id": event.execution_id, "key": event.key, "value": event.value}


def sse_message(event: str, data: Any, event_id: int | None = None) -> str:
    """One server-sent event: `id: <event_id>` (when given), `event: <kind>` and a single JSON
    `data:` line."""
    # json.dumps never emits a raw newline, so one data line holds the whole value. `default=str`
    # because a stream already under way can no longer turn into an error status.
    head = "" if event_id is None else f"id: {event_id}\n"
    data_line = json.dumps(data, separators=(",", ":"), default=str)
    return f"{head}event: {event}\ndata: {data_line}\n\n"
