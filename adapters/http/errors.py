"""The one table that maps the core's typed errors to HTTP status codes."""

from __future__ import annotations

from core import errors

STATUS_BY_ERROR: dict[type[errors.FluxError], int] = {
    errors.InvalidName: 400,
    errors.InvalidRequest: 400,
    errors.InvalidWorkflowSource: 400,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.AlreadyExists: 409,
    errors.NameCollision: 409,
    errors.InvalidState: 409,
    errors.PayloadTooLarge: 413,
    errors.InputValidationError: 422,
    errors.UpstreamUnavailable: 503,
    errors.UpstreamTimeout: 504,
}


def status_for(error: errors.FluxError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500
