"""core.responses: the status table of docs/http-api.md, one row at a time."""

from __future__ import annotations

import json

import pytest

from core.errors import InputValidationError, NameCollision, NotFound
from core.model import (
    EventKind,
    Execution,
    ExecutionError,
    ExecutionEvent,
    ExecutionState,
    WorkflowRef,
)
from core.responses import detailed_body, error_body, event_payload, shape_execution, sse_message

PREFIX = "/services/billing/invoice"
S = ExecutionState


def execution(state: ExecutionState, output=None, error=None) -> Execution:
    return Execution(
        execution_id="abc123",
        ref=WorkflowRef("billing", "invoice"),
        version=3,
        state=state,
        input={"customer_id": "C-1"},
        output=output,
        error=error,
    )


BASE = {
    "execution_id": "abc123",
    "namespace": "billing",
    "workflow": "invoice",
}


def test_completed_run_answers_the_raw_output() -> None:
    done = execution(S.COMPLETED, output={"total": 99.5})
    for kind in ("run", "resume"):
        assert shape_execution(done, kind=kind, detailed=False, url_prefix=PREFIX) == (
            200,
            {"total": 99.5},
        )
        assert shape_execution(done, kind=kind, detailed=True, url_prefix=PREFIX) == (
            200,
            {**BASE, "state": "COMPLETED", "output": {"total": 99.5}},
        )


def test_a_raw_output_of_null_stays_null() -> None:
    assert shape_execution(
        execution(S.COMPLETED), kind="run", detailed=False, url_prefix=PREFIX
    ) == (200, None)


@pytest.mark.parametrize("detailed", [False, True])
def test_pause_answers_202_with_resume_url(detailed: bool) -> None:
    paused = execution(S.PAUSED, output={"ask": "approve?"})
    status, body = shape_execution(paused, kind="run", detailed=detailed, url_prefix=PREFIX)
    assert status == 202
    assert body == {
        **BASE,
        "state": "PAUSED",
        "output": {"ask": "approve?"},
        "resume_url": "/services/billing/invoice/resume/abc123",
    }


def test_async_answers_202_with_status_url() -> None:
    status, body = shape_execution(
        execution(S.CREATED), kind="async", detailed=False, url_prefix=PREFIX
    )
    assert status == 202
    assert body == {
        **BASE,
        "state": "CREATED",
        "output": None,
        "status_url": "/services/billing/invoice/status/abc123",
    }


@pytest.mark.parametrize("kind", ["run", "resume"])
def test_failure_answers_500_with_the_error(kind: str) -> None:
    failed = execution(S.FAILED, error=ExecutionError("ValueError", "bad amount"))
    status, body = shape_execution(failed, kind=kind, detailed=False, url_prefix=PREFIX)
    assert status == 500
    assert body == {
        **BASE,
        "state": "FAILED",
        "output": None,
        "error": {"type": "ValueError", "message": "bad amount"},
    }


def test_a_failure_without_recorded_error_still_has_an_error_object() -> None:
    body = detailed_body(execution(S.FAILED), PREFIX)
    assert set(body["error"]) == {"type", "message"}


def test_cancelled_answers_200_detailed() -> None:
    status, body = shape_execution(
        execution(S.CANCELLED), kind="run", detailed=False, url_prefix=PREFIX
    )
    assert (status, body["state"]) == (200, "CANCELLED")
    assert "resume_url" not in body and "error" not in body


@pytest.mark.parametrize("state", list(ExecutionState))
def test_status_is_always_200_detailed(state: ExecutionState) -> None:
    status, body = shape_execution(
        execution(state, output=1), kind="status", detailed=False, url_prefix="/invoice"
    )
    assert status == 200
    assert body["state"] == state.value and body["output"] == 1
    assert ("resume_url" in body) == (state is S.PAUSED)
    assert ("error" in body) == (state is S.FAILED)
    assert "status_url" not in body
    if state is S.PAUSED:
        assert body["resume_url"] == "/invoice/resume/abc123"


@pytest.mark.parametrize("state", [S.CREATED, S.RUNNING])
def test_an_unsettled_sync_answer_points_at_status(state: ExecutionState) -> None:
    status, body = shape_execution(execution(state), kind="run", detailed=False, url_prefix=PREFIX)
    assert status == 202
    assert body["status_url"] == "/services/billing/invoice/status/abc123"


def test_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        shape_execution(execution(S.COMPLETED), kind="walk", detailed=False, url_prefix="")  # type: ignore[arg-type]


def test_error_body() -> None:
    assert error_body(NotFound("no such service")) == {
        "error": "not_found",
        "message": "no such service",
    }
    collision = NameCollision("ambiguous", namespaces=["a", "b"])
    assert error_body(collision) == {
        "error": "name_collision",
        "message": "ambiguous",
        "namespaces": ["a", "b"],
    }
    errors = [{"loc": ["amount"], "msg": "not a number", "type": "float_parsing"}]
    body = error_body(InputValidationError("bad input", errors=errors, error="hidden"))
    assert body == {"error": "invalid_input", "message": "bad input", "errors": errors}
    json.dumps(body)


def test_stream_helpers() -> None:
    event = ExecutionEvent("abc123", 4, EventKind.TASK_COMPLETED, "price#0", {"x": "a\nb"})
    payload = event_payload(event)
    assert payload == {"execution_id": "abc123", "key": "price#0", "value": {"x": "a\nb"}}
    message = sse_message(str(event.kind), payload)
    head, data, end = message.split("\n", 2)
    assert head == "event: task_completed"
    assert json.loads(data.removeprefix("data: ")) == payload
    assert end == "\n"
