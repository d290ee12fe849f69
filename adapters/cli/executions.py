"""`flux execution ...`: find executions (list, show, follow their events) and cancel one."""

from __future__ import annotations

import shlex
from typing import Any
from urllib.parse import urlencode

import click

from adapters.cli import execution_views as views
from adapters.cli import render
from adapters.cli.arguments import parse_ref
from adapters.cli.client import path_of
from adapters.cli.session import Session, client_command
from core.durations import format_seconds, parse_duration
from core.errors import InvalidRequest

STATES = ("CREATED", "RUNNING", "PAUSED", "COMPLETED", "FAILED", "CANCELLED")


@click.group()
def execution() -> None:
    """Act on executions."""


@execution.command("cancel")
@click.argument("args", nargs=-1, required=True, metavar="ID")
@client_command
def execution_cancel(session: Session, args: tuple[str, ...]) -> None:
    """Cancel the execution ID: a paused or created one at once, a running one by cancelling
    its current task. Cancelling it again is fine; a completed or failed one is refused with
    its state. (`cancel REF ID`, naming its workflow too, also works.)"""
    if len(args) > 2:
        raise click.UsageError("expected ID (or REF ID)")
    if len(args) == 2:
        ref, execution_id = parse_ref(args[0]), args[1]
        namespace, name = ref.namespace, ref.name
    else:
        execution_id = args[0]
        found = session.client.request("GET", path_of("executions", execution_id)).body
        namespace, name = found["namespace"], found["workflow"]
    path = path_of("workflows", namespace, name, "cancel", execution_id)
    response = session.client.request("POST", path)
    session.emit(response.body, render.execution)


@execution.command("list")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(STATES, case_sensitive=False),
    help="Only executions in this state (repeat for any of several).",
)
@click.option("--workflow", metavar="REF", help="Only executions of this workflow (ns/name).")
@click.option("--service", metavar="NAME", help="Only executions started through this service.")
@click.option("--namespace", metavar="NS", help="Only executions of workflows in NS.")
@click.option(
    "--limit", type=click.IntRange(1, 500), help="Executions per page (default 50, at most 500)."
)
@click.option("--cursor", metavar="C", help="Where to go on: a previous page's next cursor.")
@client_command
def execution_list(
    session: Session,
    states: tuple[str, ...],
    workflow: str | None,
    service: str | None,
    namespace: str | None,
    limit: int | None,
    cursor: str | None,
) -> None:
    """List executions, newest first, one page at a time."""
    params: dict[str, Any] = {
        "workflow": workflow,
        "service": service,
        "namespace": namespace,
        "limit": limit,
        "cursor": cursor,
    }
    query = [(k, str(v)) for k, v in params.items() if v is not None]
    query += [("state", state.upper()) for state in states]
    body = session.client.request("GET", "/executions?" + urlencode(query)).body
    session.emit(body, views.execution_list)
    if body.get("next_cursor"):
        # The same filters again, so the line can be run as it is.
        again = [f"--{k} {shlex.quote(v)}" for k, v in query if k != "cursor"]
        more = " ".join(["flux execution list", *again, "--cursor", body["next_cursor"]])
        session.note(f"More: {more}")


@execution.command("show")
@click.argument("execution_id")
@click.option("--events", is_flag=True, help="Also print the execution's event log.")
@client_command
def execution_show(session: Session, execution_id: str, events: bool) -> None:
    """Show one execution: its state, input, output and times (and log with --events)."""
    body = session.client.request("GET", path_of("executions", execution_id)).body
    session.emit(body, lambda found: views.execution_detail(found, events=events))


@execution.command("events")
@click.argument("execution_id")
@client_command
def execution_events(session: Session, execution_id: str) -> None:
    """Follow the execution's events from its first one, live until it ends (completed,
    failed, cancelled or paused): one JSON line per event, {"id", "event", "data"}."""
    found = session.client.request("GET", path_of("executions", execution_id)).body
    path = path_of("workflows", found["namespace"], found["workflow"], "events", execution_id)

    def on_event(event_id: str | None, kind: str, data: Any) -> None:
        click.echo(views.event_line(event_id, kind, data))

    session.unbounded().follow(path, on_event=on_event)


@execution.command("purge")
@click.option(
    "--older-than",
    "older_than",
    required=True,
    metavar="DURATION",
    help="Purge finished executions last changed more than DURATION ago: a number followed by "
    "s, m, h or d (e.g. 7d, 12h, 0s for every finished one).",
)
@client_command
def execution_purge(session: Session, older_than: str) -> None:
    """Delete finished (completed, failed, cancelled) executions older than DURATION, with their
    events, and the expired idempotency keys, now; prints how many executions went. Created,
    running and paused executions are never purged. Needs the admin permission."""
    try:
        seconds = parse_duration(older_than)
    except InvalidRequest as exc:
        raise click.BadParameter(exc.message, param_hint="'--older-than'") from None
    response = session.client.request(
        "POST", "/executions/purge", params={"older_than": format_seconds(seconds)}
    )
    session.emit(response.body, _purged)


def _purged(body: Any) -> str:
    line = f"purged {body['purged']} execution(s)"
    if body.get("idempotency_keys"):
        line += f" and {body['idempotency_keys']} expired idempotency key(s)"
    if body.get("complete") is False:
        line += "; more are left: run it again"
    return line
