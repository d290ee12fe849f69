"""Typed errors of the core. The HTTP adapter maps each `code` to a status in one table."""

from __future__ import annotations

from typing import Any


class FluxError(Exception):
    """Base of every error the core and engine raise on purpose.

    `code` is a stable machine-readable string; `details` is extra JSON-able context
    that ends up in the error body next to `error` and `message`.
    """

    code = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidName(FluxError):
    code = "invalid_name"


class InvalidRequest(FluxError):
    code = "invalid_request"


class InputValidationError(FluxError):
    """The request body does not fit the workflow's input type (422)."""

    code = "invalid_input"


class InvalidWorkflowSource(FluxError):
    """A registered module fails to import or holds no workflow (400)."""

    code = "invalid_workflow_source"


class NotFound(FluxError):
    code = "not_found"


class ServiceNotFound(NotFound):
    code = "service_not_found"


class WorkflowNotFound(NotFound):
    code = "workflow_not_found"


class EndpointNotFound(NotFound):
    code = "endpoint_not_found"


class ExecutionNotFound(NotFound):
    code = "execution_not_found"


class AlreadyExists(FluxError):
    code = "already_exists"


class NameCollision(FluxError):
    code = "name_collision"


class IdempotencyKeyReused(FluxError):
    """An Idempotency-Key sent again with another body or target than its first request (422)."""

    code = "idempotency_key_reused"


class InvalidState(FluxError):
    """An operation that the execution's state does not allow, e.g. resume of a non-paused run."""

    code = "invalid_state"


class Unauthenticated(FluxError):
    code = "unauthenticated"


class Forbidden(FluxError):
    code = "forbidden"


class UnsupportedMediaType(FluxError):
    """A body that is not JSON (415); `accepted` names the type to send."""

    code = "unsupported_media_type"


class PayloadTooLarge(FluxError):
    code = "payload_too_large"


class ShuttingDown(FluxError):
    """The server is stopping and will not wait for this call any longer (503)."""

    code = "shutting_down"


class UpstreamUnavailable(FluxError):
    code = "upstream_unavailable"


class UpstreamTimeout(FluxError):
    code = "upstream_timeout"


class WorkflowInUse(InvalidState):
    """A workflow delete that would leave CREATED, RUNNING or PAUSED executions without their
    code (409, their number in `count`); `force=true` cancels them first."""

    code = "workflow_in_use"


class StorageInUse(FluxError):
    """Another process holds the embedded database this one was asked to serve (one server per
    SQLite file): nothing was read or written. `pid` names the holder when it is known."""

    code = "storage_in_use"


class StorageUnavailable(FluxError):
    """The database cannot do what was asked right now (503): `reason` is `busy` (locked by
    someone else past the busy timeout), `full` (no space left), `read-only` or `unreachable`
    (I/O errors, a lost connection). `execution_id` is set when the failed write was one."""

    code = "storage_unavailable"


STORAGE_REASONS = ("busy", "full", "read-only", "unreachable")
