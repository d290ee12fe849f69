"""`flux execution ...`: act on one execution of a workflow."""

from __future__ import annotations

import click

from adapters.cli import render
from adapters.cli.arguments import parse_ref
from adapters.cli.client import path_of
from adapters.cli.session import Session, client_command


@click.group()
def execution() -> None:
    """Act on executions."""


@execution.command("cancel")
@click.argument("ref")
@click.argument("execution_id")
@client_command
def execution_cancel(session: Session, ref: str, execution_id: str) -> None:
    """Cancel an execution of the workflow REF (namespace/name): a paused or created one at
    once, a running one by cancelling its current task. Cancelling it again is fine; a
    completed or failed one is refused with its state."""
    parsed = parse_ref(ref)
    path = path_of("workflows", parsed.namespace, parsed.name, "cancel", execution_id)
    response = session.client.request("POST", path)
    session.emit(response.body, render.execution)
