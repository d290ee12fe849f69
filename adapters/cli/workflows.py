"""`flux workflow ...`: register, inspect, run, resume and follow workflows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from adapters.cli import render
from adapters.cli.arguments import check_namespaces, confirm_delete, parse_ref, read_input
from adapters.cli.client import ApiError, CliError, path_of
from adapters.cli.session import Session, client_command
from core.model import WorkflowRef


@click.group()
def workflow() -> None:
    """Register, inspect and run workflows."""


def _workflow_path(ref: WorkflowRef, *rest: str) -> str:
    return path_of("workflows", ref.namespace, ref.name, *rest)


@workflow.command("register")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@client_command
def workflow_register(session: Session, file: Path) -> None:
    """Upload FILE (a Python module); every @workflow in it is registered."""
    try:
        source = file.read_bytes()
    except OSError as exc:
        raise click.BadParameter(f"cannot read {file}: {exc.strerror}") from None
    response = session.client.request(
        "POST",
        "/workflows",
        data=source,
        params={"filename": file.name},
        headers={"Content-Type": "text/x-python"},
    )
    session.emit(response.body, lambda body: render.registered(body, file.name))


@workflow.command("list")
@click.option("--namespace", help="Only this namespace.")
@client_command
def workflow_list(session: Session, namespace: str | None) -> None:
    """List registered workflows (latest version of each)."""
    if namespace is not None:
        check_namespaces((namespace,))
    response = session.client.request("GET", "/workflows", params={"namespace": namespace})
    session.emit(response.body, render.workflow_list)


@workflow.command("show")
@click.argument("ref")
@client_command
def workflow_show(session: Session, ref: str) -> None:
    """Show a workflow's versions and input schema."""
    response = session.client.request("GET", _workflow_path(parse_ref(ref)))
    session.emit(response.body, render.workflow_detail)


@workflow.command("delete")
@click.argument("ref")
@click.option("--version", type=click.IntRange(min=1), help="Delete only this version.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@client_command
def workflow_delete(session: Session, ref: str, version: int | None, yes: bool) -> None:
    """Delete a workflow (every version, or one with --version)."""
    parsed = parse_ref(ref)
    what = f"{parsed} v{version}" if version else f"every version of {parsed}"
    confirm_delete(what, yes)
    response = session.client.request("DELETE", _workflow_path(parsed), params={"version": version})
    count = response.body.get("deleted") if isinstance(response.body, dict) else None
    session.emit(response.body, lambda _: f"Deleted {count} version(s) of {parsed}.")


MODES = click.Choice(["sync", "async", "stream"])


def _execute(
    session: Session, path: str, body: Any, mode: str, version: int | None, detailed: bool
) -> None:
    params = {"version": version, "detailed": detailed}
    if mode == "stream":
        _stream(session, path + "/stream", body, params)
        return
    if mode != "sync":
        path = f"{path}/{mode}"
    response = session.client.request(
        "POST", path, json_body=body, has_body=True, params=params, ok=(500,)
    )
    # A 500 with the detailed shape is a FAILED run, reported below; any other 500 is the
    # server's own error.
    if response.status >= 500 and not render.is_detailed(response.body):
        raise ApiError(response.status, response.body)
    session.emit(response.body, render.execution)
    _fail_on_outcome(response.status, response.body)


def _fail_on_outcome(status: int, body: Any) -> None:
    if render.is_detailed(body) and body["state"] in ("FAILED", "CANCELLED"):
        error = body.get("error") or {}
        reason = f": {error.get('type')}: {error.get('message')}" if error else ""
        raise CliError(
            f"execution {body['execution_id']} {body['state'].lower()}{reason} ({status})"
        )


def _stream(session: Session, path: str, body: Any, params: dict[str, Any]) -> None:
    last: list[Any] = [None]

    def on_event(kind: str, data: Any) -> None:
        if kind == "state":
            last[0] = data
        if session.fmt == "json":
            click.echo(json.dumps({"event": kind, "data": data}, ensure_ascii=False))
        else:
            click.echo(render.event(kind, data))

    status = session.client.stream(path, json_body=body, params=params, on_event=on_event)
    if session.fmt != "json" and render.is_detailed(last[0]):
        click.echo(render.execution(last[0]))
    _fail_on_outcome(status, last[0])


@workflow.command("run")
@click.argument("ref")
@click.argument("input_json", required=False, metavar="[INPUT_JSON]")
@click.option("--mode", type=MODES, default="sync", show_default=True)
@click.option("--version", type=click.IntRange(min=1), help="Run this version, not the latest.")
@click.option("--detailed", is_flag=True, help="Print execution metadata, not just the output.")
@client_command
def workflow_run(
    session: Session,
    ref: str,
    input_json: str | None,
    mode: str,
    version: int | None,
    detailed: bool,
) -> None:
    """Run a workflow. INPUT_JSON is inline JSON, '-' (stdin) or '@file'."""
    parsed = parse_ref(ref)
    path = _workflow_path(parsed, "run")
    _execute(session, path, read_input(input_json), mode, version, detailed)


@workflow.command("resume")
@click.argument("ref")
@click.argument("execution_id")
@click.argument("input_json", required=False, metavar="[INPUT_JSON]")
@click.option("--mode", type=MODES, default="sync", show_default=True)
@click.option("--detailed", is_flag=True, help="Print execution metadata, not just the output.")
@client_command
def workflow_resume(
    session: Session,
    ref: str,
    execution_id: str,
    input_json: str | None,
    mode: str,
    detailed: bool,
) -> None:
    """Resume a paused execution; INPUT_JSON becomes the value pause() returns."""
    path = _workflow_path(parse_ref(ref), "resume", execution_id)
    _execute(session, path, read_input(input_json), mode, None, detailed)


@workflow.command("status")
@click.argument("ref")
@click.argument("execution_id")
@client_command
def workflow_status(session: Session, ref: str, execution_id: str) -> None:
    """Show an execution's state and output."""
    response = session.client.request("GET", _workflow_path(parse_ref(ref), "status", execution_id))
    session.emit(response.body, render.execution)
