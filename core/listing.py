"""Listing executions (SPEC §9): the filter, the page size, the opaque cursor, and the JSON
shape of a listed or shown execution. Pure: no I/O.

Order is newest first: `created_at` descending, ties broken by `execution_id` descending, so
every execution has one place in the order and a cursor (the last listed item's
`(created_at, execution_id)`) says exactly where the next page starts: keyset pagination,
which neither repeats nor skips an item when executions are added between pages.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

from attrs import frozen

from core.errors import FluxError, InvalidRequest
from core.model import JSON, Execution, ExecutionEvent, ExecutionState, WorkflowRef
from core.names import validate_namespace, validate_service_name
from core.permissions import ANY
from core.responses import detailed_body, status_url

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
PARAMETERS = ("namespace", "workflow", "service", "state", "limit", "cursor")
# A few bytes of digest in front of the position: a cursor that was cut short or edited by hand
# is refused as malformed instead of silently paging from somewhere else.
_CHECK_BYTES = 6


@frozen
class ExecutionFilter:
    """What a listing keeps; every field that is set must hold (AND). `states`: any of them."""

    namespace: str | None = None
    workflow: WorkflowRef | None = None
    service: str | None = None
    states: frozenset[ExecutionState] = frozenset()

    def keeps(self, execution: Execution) -> bool:
        """The same test the storage adapters make in SQL (the memory twin uses this one)."""
        return (
            (self.namespace is None or execution.ref.namespace == self.namespace)
            and (self.workflow is None or execution.ref == self.workflow)
            and (self.service is None or execution.service == self.service)
            and (not self.states or execution.state in self.states)
        )


EVERYTHING = ExecutionFilter()


@frozen(order=True)
class Cursor:
    """A position in the newest-first order: the next page holds what comes after it, i.e.
    the executions whose `(created_at, execution_id)` is smaller."""

    created_at: float
    execution_id: str

    @classmethod
    def after(cls, execution: Execution) -> Cursor:
        return cls(execution.created_at, execution.execution_id)

    def precedes(self, execution: Execution) -> bool:
        """Whether `execution` comes after this position (belongs to a later page)."""
        return (execution.created_at, execution.execution_id) < (
            self.created_at,
            self.execution_id,
        )

    def encode(self) -> str:
        # repr of a float is its shortest exact form, so JSON carries created_at bit for bit.
        payload = json.dumps([self.created_at, self.execution_id], separators=(",", ":"))
        data = payload.encode("utf-8")
        return base64.urlsafe_b64encode(_check(data) + data).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor `encode` made; `InvalidRequest` for anything else."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            check, data = raw[:_CHECK_BYTES], raw[_CHECK_BYTES:]
            if not text.isascii() or check != _check(data):
                raise ValueError("checksum")
            created_at, execution_id = json.loads(data.decode("utf-8"))
        except (ValueError, TypeError):  # binascii.Error and UnicodeError are ValueErrors
            raise _bad_cursor() from None
        if (
            isinstance(created_at, bool)
            or not isinstance(created_at, int | float)
            or not math.isfinite(created_at)
            or not isinstance(execution_id, str)
            or not execution_id
        ):
            raise _bad_cursor()
        return cls(float(created_at), execution_id)


def _check(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=_CHECK_BYTES).digest()


def _bad_cursor() -> InvalidRequest:
    return InvalidRequest(
        "invalid cursor: pass back the next_cursor of a previous answer unchanged",
        parameter="cursor",
    )


@frozen
class Listing:
    """A parsed `GET /executions` query."""

    filter: ExecutionFilter = EVERYTHING
    limit: int = DEFAULT_LIMIT
    cursor: Cursor | None = None


@frozen
class Page:
    executions: tuple[Execution, ...]
    next_cursor: Cursor | None  # None: this is the last page


def parse_listing(query: Mapping[str, Sequence[str]]) -> Listing:
    """A listing from query parameters (each name with its values, in order). Unknown names,
    repeated single-valued ones and bad values are `InvalidRequest` naming the parameter."""
    unknown = sorted(set(query) - set(PARAMETERS))
    if unknown:
        raise InvalidRequest(
            f"unknown query parameter {unknown[0]!r}: use {', '.join(PARAMETERS)}",
            parameter=unknown[0],
        )
    single = {name: _single(name, values) for name, values in query.items() if name != "state"}
    cursor = single.get("cursor")
    return Listing(
        ExecutionFilter(
            namespace=_named("namespace", single.get("namespace"), validate_namespace),
            workflow=_named("workflow", single.get("workflow"), WorkflowRef.parse),
            service=_named("service", single.get("service"), validate_service_name),
            states=parse_states(query.get("state", ())),
        ),
        parse_limit(single.get("limit")),
        None if cursor is None else Cursor.decode(cursor),
    )


def _single(name: str, values: Sequence[str]) -> str:
    if len(values) != 1:
        raise InvalidRequest(f"query parameter {name!r} may be given once", parameter=name)
    return values[0]


def _named(parameter: str, value: str | None, validate: Callable[[str], T]) -> T | None:
    if value is None:
        return None
    try:
        return validate(value)
    except FluxError as exc:
        raise InvalidRequest(exc.message, parameter=parameter) from None


def parse_states(values: Iterable[str]) -> frozenset[ExecutionState]:
    states: set[ExecutionState] = set()
    for value in values:
        try:
            states.add(ExecutionState(value))
        except ValueError:
            raise InvalidRequest(
                f"invalid state {value!r}: use one of {', '.join(ExecutionState)}",
                parameter="state",
            ) from None
    return frozenset(states)


def parse_limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIMIT:
        raise InvalidRequest(
            f"invalid limit {value!r}: use a whole number from 1 to {MAX_LIMIT}",
            parameter="limit",
        )
    return int(text)


def runnable_namespaces(permissions: Iterable[str]) -> frozenset[str] | None:
    """The namespaces whose workflows these permissions may run some of, or None when one of
    them may run workflows of any namespace (e.g. `workflow:*:report:run`, `*`). Every run
    permission they grant (`core.permissions`) lies in a namespace of the answer."""
    found: set[str] = set()
    for pattern in permissions:
        segments = pattern.split(":")
        if not _may_grant_a_run(segments):
            continue
        if len(segments) < 2 or segments[1] == ANY:
            return None
        found.add(segments[1])
    return frozenset(found)


def _may_grant_a_run(segments: list[str]) -> bool:
    """Whether a granted pattern matches `workflow:{namespace}:{name}:run` for some names."""
    if segments[-1] == ANY and len(segments) <= 4:
        head = segments[:-1]  # a trailing wildcard swallows the rest
    elif len(segments) == 4:
        head = segments
    else:
        return False
    fixed = ("workflow", None, None, "run")
    return all(g in (ANY, w) or w is None for g, w in zip(head, fixed, strict=False))


def newest_first(executions: Iterable[Execution]) -> list[Execution]:
    return sorted(executions, key=lambda e: (e.created_at, e.execution_id), reverse=True)


# -- JSON shapes -------------------------------------------------------------------------------


def rfc3339(epoch: float) -> str:
    """`2026-12-02T03:20:01.123456Z`: UTC, microseconds. Computed from the number alone (core
    reads no clock and imports no datetime): days since 1970 to a civil date."""
    whole = math.floor(epoch)  # apart: epoch * 10**6 would lose digits past 2**53
    micros = whole * 1_000_000 + round((epoch - whole) * 1_000_000)
    days, rest = divmod(micros, 86_400_000_000)
    seconds, micro = divmod(rest, 1_000_000)
    year, month, day = _civil(days)
    hour, minute, second = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{micro:06d}Z"


def _civil(days: int) -> tuple[int, int, int]:
    """(year, month, day) of a day count from 1970-01-01, proleptic Gregorian. The count is
    shifted to start on 0000-03-01 so each 400-year era has the leap day at its years' end."""
    shifted = days + 719_468
    era = shifted // 146_097
    day_of_era = shifted - era * 146_097
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    month_index = (5 * day_of_year + 2) // 153  # 0 = March
    day = day_of_year - (153 * month_index + 2) // 5 + 1
    month = month_index + 3 if month_index < 10 else month_index - 9
    year = year_of_era + era * 400 + (1 if month <= 2 else 0)
    return year, month, day


def by_ref_prefix(ref: WorkflowRef, mount: str = "") -> str:
    return f"{mount}/workflows/{ref.namespace}/{ref.name}"


def listed_body(execution: Execution, mount: str = "") -> dict[str, JSON]:
    """One item of `GET /executions`: the detailed shape, its status URL (by ref, which works
    whatever service started it), version, times and starting service."""
    prefix = by_ref_prefix(execution.ref, mount)
    body = detailed_body(execution, prefix)
    body["status_url"] = status_url(prefix, execution.execution_id)
    body["version"] = execution.version
    body["created_at"] = rfc3339(execution.created_at)
    body["updated_at"] = rfc3339(execution.updated_at)
    if execution.service is not None:
        body["service"] = execution.service
    return body


def event_body(event: ExecutionEvent) -> dict[str, JSON]:
    return {
        "id": event.seq,
        "type": str(event.kind),
        "key": event.key,
        "value": event.value,
        "at": rfc3339(event.at),
    }


def shown_body(
    execution: Execution, events: Sequence[ExecutionEvent], mount: str = ""
) -> dict[str, JSON]:
    """`GET /executions/{id}`: the listed item plus its input and its log."""
    body = listed_body(execution, mount)
    body["input"] = execution.input
    body["events"] = [event_body(event) for event in events]
    return body


def page_body(page: Page, mount: str = "") -> dict[str, JSON]:
    cursor = page.next_cursor
    return {
        "executions": [listed_body(execution, mount) for execution in page.executions],
        "next_cursor": None if cursor is None else cursor.encode(),
    }
