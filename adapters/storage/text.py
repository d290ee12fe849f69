"""What every storage adapter refuses to store, so that all of them answer alike.

PostgreSQL cannot hold NUL (U+0000) in text, and neither text nor jsonb can hold a lone UTF-16
surrogate (U+D800 to U+DFFF; a Python str can, UTF-8 cannot); JSON has no NaN or Infinity.
SQLite would store some of these and give them back, PostgreSQL would fail with a 500. The
decision (docs/architecture.md): every adapter refuses them with `InvalidRequest` (400) before
writing anything, and a lookup by such a key finds nothing (no such row can exist). Integers of
any size, floats and key order are kept as written on every adapter (JSON text on SQLite, `json`
columns on PostgreSQL since its migration 3: jsonb made 1.5e300 an integer and sorted keys).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from core.errors import InvalidRequest
from core.listing import Cursor, ExecutionFilter
from core.model import Execution, ExecutionEvent, ServiceDefinition
from ports.catalog import NewWorkflow

MESSAGE = "text with NUL or an unpaired surrogate cannot be stored"
NOT_FINITE = "numbers that are not finite (NaN, Infinity) cannot be stored as JSON"

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_text(text: str | None) -> bool:
    return text is None or _UNSTORABLE.search(text) is None


def page_may_match(filter: ExecutionFilter, after: Cursor | None) -> bool:
    """False when a listing names text that is never stored: nothing can match it, and the
    database need not be asked (nor fed text it would refuse)."""
    texts = (filter.namespace, filter.service, None if after is None else after.execution_id)
    return all(storable_text(value) for value in texts)


def check(*values: Any) -> None:
    """Raise `InvalidRequest` if any value (a str, or a JSON value: keys and strings at any
    depth, and its numbers) holds what cannot be stored."""
    pending = list(values)
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if _UNSTORABLE.search(value) is not None:
                raise InvalidRequest(MESSAGE)
        elif isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list | tuple):
            pending.extend(value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise InvalidRequest(NOT_FINITE)


def text_fault(exc: BaseException) -> InvalidRequest | None:
    """The refusal a driver's encoding error stands for (a value that slipped past `check`)."""
    if isinstance(exc, UnicodeEncodeError):
        refused = InvalidRequest(MESSAGE)
        refused.__cause__ = exc
        return refused
    return None


def check_execution(execution: Execution) -> None:
    error = execution.error
    check(
        execution.execution_id,
        str(execution.ref),
        execution.pause_name,
        execution.service,
        execution.callback_url,
        None if error is None else (error.type, error.message),
        execution.input,
        execution.output,
    )


def check_events(events: Sequence[ExecutionEvent]) -> None:
    for event in events:
        check(event.execution_id, event.key, event.value)


def check_service(service: ServiceDefinition) -> None:
    check(
        service.name,
        service.namespaces,
        [str(ref) for ref in service.workflows],
        [str(ref) for ref in service.exclusions],
    )


def check_workflows(workflows: Sequence[NewWorkflow]) -> None:
    for new in workflows:
        check(str(new.ref), new.source, new.description, new.input_schema)
