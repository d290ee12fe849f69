"""Human-readable (`--format table`) renderings of `GET /executions` and `GET /executions/{id}`
bodies, and the one-line form of a followed event. Missing keys are tolerated, as in render."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from adapters.cli import render


def _when(text: Any) -> str:
    """`2026-12-02 03:20:01` of an RFC 3339 time: seconds are enough in a table."""
    return str(text or "").replace("T", " ")[:19]


def execution_list(body: Mapping[str, Any]) -> str:
    items = body.get("executions") or []
    if not items:
        return "No executions."
    rows = [
        (
            item.get("execution_id"),
            f"{item.get('namespace')}/{item.get('workflow')}",
            item.get("version"),
            item.get("state"),
            item.get("service"),
            _when(item.get("created_at")),
        )
        for item in items
    ]
    return render.table(["EXECUTION", "WORKFLOW", "VERSION", "STATE", "SERVICE", "CREATED"], rows)


def execution_detail(body: Mapping[str, Any], *, events: bool) -> str:
    lines = [render.execution(body)]
    if body.get("version") is not None:
        lines.append(f"Version: {body['version']}")
    if body.get("service"):
        lines.append(f"Service: {body['service']}")
    lines.append(f"Created: {body.get('created_at')}")
    lines.append(f"Updated: {body.get('updated_at')}")
    if "input" in body:
        lines.append(f"Input: {render.compact(body['input'])}")
    if events:
        log = body.get("events") or []
        rows = [
            (e.get("id"), _when(e.get("at")), e.get("type"), e.get("key"), _value(e.get("value")))
            for e in log
        ]
        lines.append("Events:" if rows else "Events: (none)")
        if rows:
            lines.append(render.table(["ID", "AT", "TYPE", "KEY", "VALUE"], rows))
    if body.get("callbacks"):
        lines.append("Callbacks:")
        lines.append(render.table(["ID", "URL", "STATE", "ATTEMPTS", "LAST ERROR"], _calls(body)))
    return "\n".join(lines)


def _calls(body: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """One row per completion callback delivery (docs/executions.md)."""
    return [
        (c.get("id"), c.get("url"), c.get("state"), c.get("attempts"), c.get("last_error") or "")
        for c in body["callbacks"]
    ]


def _value(value: Any) -> str:
    text = "" if value is None else render.compact(value)
    return text if len(text) <= 60 else text[:57] + "..."


def event_line(event_id: str | None, kind: str, data: Any) -> str:
    """One followed event as one JSON line: `{"id", "event", "data"}` (id as the stream sent
    it, a number when it is one)."""
    number: int | str | None = event_id
    if event_id is not None and event_id.isdigit():
        number = int(event_id)
    return json.dumps(
        {"id": number, "event": kind, "data": data}, ensure_ascii=False, separators=(",", ":")
    )
