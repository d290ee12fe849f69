"""Human-readable (`--format table`) renderings of the HTTP API's JSON bodies.

Each function takes a body exactly as the server sent it and returns text; missing keys are
tolerated so an older or newer server still prints something sensible.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def as_json(body: Any) -> str:
    return json.dumps(body, indent=2, ensure_ascii=False)


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [
        ["-" if c in (None, "") else str(c) for c in r] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def _first_line(text: Any) -> str:
    lines = str(text or "").strip().splitlines()
    return lines[0] if lines else ""


def _joined(values: Any) -> str:
    return ", ".join(str(v) for v in values or ()) or "(none)"


# --- services --------------------------------------------------------------------------------


def service_detail(service: Mapping[str, Any]) -> str:
    lines = [f"Service: {service.get('name', '?')}"]
    lines.append(f"Namespaces: {_joined(service.get('namespaces'))}")
    if service.get("workflows"):
        lines.append(f"Workflows: {_joined(service['workflows'])}")
    lines.append(f"Exclusions: {_joined(service.get('exclusions'))}")
    lines.append(f"MCP: {'enabled' if service.get('mcp_enabled') else 'disabled'}")
    if "endpoints" in service:
        endpoints = service.get("endpoints") or []
        lines.append(f"Resolved endpoints ({len(endpoints)}):")
        for ep in endpoints:
            lines.append(f"  /{ep.get('name')} → {ep.get('ref')} (v{ep.get('version')})")
    collisions = service.get("collisions") or []
    if collisions:
        lines.append(f"Collisions ({len(collisions)}):")
        for col in collisions:
            lines.append(f"  /{col.get('name')} → {', '.join(col.get('refs') or ())}")
    unresolved = service.get("unresolved") or []
    if unresolved:
        lines.append(f"Unresolved ({len(unresolved)}):")
        lines.extend(f"  {ref}" for ref in unresolved)
    reserved = service.get("reserved") or []
    if reserved:
        names = ", ".join(f"/{name}" for name in reserved)
        lines.append(f"Reserved by the standalone process: {names}")
    return "\n".join(lines)


def service_list(body: Mapping[str, Any]) -> str:
    services = body.get("services") or []
    if not services:
        return "No services."
    rows = [
        (
            s.get("name"),
            ", ".join(s.get("namespaces") or ()),
            ", ".join(s.get("workflows") or ()),
            ", ".join(s.get("exclusions") or ()),
            "enabled" if s.get("mcp_enabled") else "disabled",
        )
        for s in services
    ]
    return table(("NAME", "NAMESPACES", "WORKFLOWS", "EXCLUSIONS", "MCP"), rows)


# --- workflows -------------------------------------------------------------------------------


def registered(body: Mapping[str, Any], filename: str) -> str:
    workflows = body.get("workflows") or []
    lines = [f"{filename}: {len(workflows)} workflow(s)"]
    for wf in workflows:
        what = "registered" if wf.get("created", True) else "unchanged"
        lines.append(f"  {wf.get('ref')} v{wf.get('version')} ({what})")
    return "\n".join(lines)


def workflow_list(body: Mapping[str, Any]) -> str:
    workflows = body.get("workflows") or []
    if not workflows:
        return "No workflows."
    rows = [(w.get("ref"), w.get("version"), _first_line(w.get("description"))) for w in workflows]
    return table(("REF", "VERSION", "DESCRIPTION"), rows)


def workflow_detail(body: Mapping[str, Any]) -> str:
    versions = body.get("versions") or []
    latest = body.get("latest")
    latest_number = latest.get("version") if isinstance(latest, Mapping) else latest
    current = latest if isinstance(latest, Mapping) else None
    for info in versions:
        if info.get("version") == latest_number:
            current = info
    if current is None and versions:
        current = max(versions, key=lambda v: v.get("version") or 0)
    lines = [f"Workflow: {body.get('ref')}"]
    if latest_number is None and current is not None:
        latest_number = current.get("version")
    lines.append(f"Latest version: {latest_number}")
    lines.append(f"Versions: {_joined(v.get('version') for v in versions)}")
    if current is not None:
        if current.get("description"):
            lines.append(f"Description: {_first_line(current['description'])}")
        schema = current.get("input_schema")
        if schema is None:
            lines.append("Input: untyped (any JSON value)")
        else:
            lines.append("Input schema:")
            lines.extend("  " + line for line in as_json(schema).splitlines())
    return "\n".join(lines)


# --- executions ------------------------------------------------------------------------------


def is_detailed(body: Any) -> bool:
    return isinstance(body, Mapping) and "execution_id" in body and "state" in body


def execution(body: Any) -> str:
    """A detailed shape as labelled lines; a raw sync output as pretty JSON."""
    if not is_detailed(body):
        return as_json(body)
    ref = f"{body.get('namespace')}/{body.get('workflow')}"
    lines = [
        f"Execution: {body['execution_id']}",
        f"Workflow: {ref}",
        f"State: {body['state']}",
    ]
    if body.get("output") is not None:
        lines.append(f"Output: {compact(body['output'])}")
    error = body.get("error")
    if isinstance(error, Mapping):
        lines.append(f"Error: {error.get('type')}: {error.get('message')}")
    if body.get("status_url"):
        lines.append(f"Status URL: {body['status_url']}")
    if body.get("resume_url"):
        lines.append(f"Resume URL: {body['resume_url']}")
    return "\n".join(lines)


def event(kind: str, data: Any) -> str:
    if kind == "state" and is_detailed(data):
        return f"[state] {data['state']}"
    if isinstance(data, Mapping) and "key" in data:
        value = data.get("value")
        tail = f" → {compact(value)}" if value is not None else ""
        return f"[{kind}] {data['key']}{tail}"
    return f"[{kind}] {compact(data)}"
