"""`flux workflow ...`: register, inspect, run, resume and follow workflows."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from adapters.cli import render, uploads
from adapters.cli.arguments import check_namespaces, confirm_delete, parse_ref, read_input
from adapters.cli.call_options import IDEMPOTENCY_KEY, WAIT, call_headers
from adapters.cli.client import ApiError, CliError, path_of
from adapters.cli.session import Session, client_command, load
from core.model import WorkflowRef


@click.group()
def workflow() -> None:
    """Register, inspect and run workflows."""


def _workflow_path(ref: WorkflowRef, *rest: str) -> str:
    return path_of("workflows", ref.namespace, ref.name, *rest)


@workflow.command("register")
@click.argument(
    "files", nargs=-1, required=True, metavar="FILE...", type=click.Path(path_type=Path)
)
@client_command
def workflow_register(session: Session, files: tuple[Path, ...]) -> None:
    """Upload Python modules; every @workflow in them is registered. FILE is a module or a
    directory (every *.py in it); several modules go up together in one request, so they can
    import each other."""
    limit = load().max_upload_bytes
    modules = uploads.collect(files, limit)
    if len(modules) == 1:
        name, source = modules[0]
        response = session.client.request(
            "POST",
            "/workflows",
            data=source,
            params={"filename": Path(name).name},
            headers={"Content-Type": "text/x-python"},
        )
    else:
        response = session.client.request(
            "POST", "/workflows", parts=[("file", name, source) for name, source in modules]
        )
    label = ", ".join(name for name, _ in modules)
    session.emit(response.body, lambda body: render.registered(body, label))


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
@click.option(
    "--force", is_flag=True, help="Cancel the PAUSED and RUNNING executions and delete anyway."
)
@client_command
def workflow_delete(
    session: Session, ref: str, version: int | None, yes: bool, force: bool
) -> None:
    """Delete a workflow (every version, or one with --version)."""
    parsed = parse_ref(ref)
    what = f"{parsed} v{version}" if version else f"every version of {parsed}"
    confirm_delete(what, yes)
    response = session.client.request(
        "DELETE",
        _workflow_path(parsed),
        params={"version": version, "force": force},
        ok=(409,),
    )
    if response.status == 409:
        raise _in_use(parsed, version, response.body)
    count = response.body.get("deleted") if isinstance(response.body, dict) else None
    session.emit(response.body, lambda _: f"Deleted {count} version(s) of {parsed}.")


def _in_use(ref: WorkflowRef, version: int | None, body: Any) -> ApiError:
    """A 409: how many executions hold the workflow, and how to delete it anyway."""
    count = body.get("count") if isinstance(body, dict) else None
    if not isinstance(count, int) or isinstance(count, bool):
        return ApiError(409, body)
    again = f"flux workflow delete {ref}{f' --version {version}' if version else ''} --force"
    text = (
        f"{ref} has {count} PAUSED or RUNNING execution(s); '{again}' cancels them and deletes it"
    )
    return ApiError(409, body, text)


MODES = click.Choice(["sync", "async", "stream"])


def _execute(
    session: Session,
    ref: WorkflowRef,
    path: str,
    body: Any,
    mode: str,
    version: int | None,
    detailed: bool,
    execution_id: str | None = None,
    *,
    key: str | None = None,
    wait: int | None = None,
) -> None:
    """One run (`execution_id` None) or resume. Sync and stream calls wait as long as the run
    takes (unless --timeout, or the server's bound with --wait); an interrupted one says which
    execution goes on, and how to follow it. `key`: the Idempotency-Key sent."""
    if wait is not None and mode != "sync":
        raise click.UsageError("--wait applies to --mode sync only")
    params = {"version": version, "detailed": detailed}
    headers = call_headers(key, wait)
    follow = Follow(ref, execution_id)
    try:
        with follow.on_interrupt():
            if mode == "stream":
                _stream(session, path + "/stream", body, params, follow, headers)
            elif mode == "sync" and execution_id is None and wait is None:
                _sync_run(session, path + "/stream", body, params, detailed, follow, headers)
            else:
                sent = path if mode == "sync" else f"{path}/{mode}"
                _plain(session, sent, body, params, mode, headers)
    except KeyboardInterrupt:
        raise Interrupted(follow.interrupted()) from None


class Interrupted(CliError):
    """Ctrl-C or SIGTERM while waiting for a run: the execution goes on on the server."""

    exit_code = 130


def _plain(
    session: Session,
    path: str,
    body: Any,
    params: dict[str, Any],
    mode: str,
    headers: dict[str, str],
) -> None:
    client = session.unbounded() if mode == "sync" else session.client
    response = client.request(
        "POST", path, json_body=body, has_body=True, params=params, headers=headers, ok=(500,)
    )
    # A 500 with the detailed shape is a FAILED run, reported below; any other 500 is the
    # server's own error.
    if response.status >= 500 and not render.is_detailed(response.body):
        raise ApiError(response.status, response.body)
    session.emit(response.body, render.execution)
    _fail_on_outcome(response.status, response.body)


class Follow:
    """The execution a run or resume is about, once known, and how to follow it."""

    def __init__(self, ref: WorkflowRef, execution_id: str | None) -> None:
        self.ref = ref
        self.execution_id = execution_id
        self._told = False

    def saw(self, data: Any) -> None:
        """A stream event: the first one names the execution; a person at a terminal is told
        at once (a script learns it from the output, or on interruption)."""
        if self.execution_id is not None or not isinstance(data, dict):
            return
        execution_id = data.get("execution_id")
        if isinstance(execution_id, str):
            self.execution_id = execution_id
            if _stderr_is_terminal():
                click.echo(f"execution {execution_id}: {self.how()}", err=True)
                self._told = True

    def how(self) -> str:
        return f"follow it with 'flux workflow status {self.ref} {self.execution_id}'"

    def interrupted(self) -> str:
        if self.execution_id is None:
            return "interrupted before the server named the execution"
        return f"interrupted; execution {self.execution_id} goes on: {self.how()}"

    @contextlib.contextmanager
    def on_interrupt(self) -> Iterator[None]:
        """Ctrl-C and SIGTERM end the call at once, so the line above is printed. Both get a
        handler that raises where the process is: asyncio's own Ctrl-C handling would cancel
        the call's task and wait for it to wind down, which a call blocked on a silent server
        may not do in time."""

        def stop(_signum: int, _frame: Any) -> None:
            raise KeyboardInterrupt

        try:
            previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread (an embedding test runner)
            yield
            return
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _sync_run(
    session: Session,
    path: str,
    body: Any,
    params: dict[str, Any],
    detailed: bool,
    follow: Follow,
    headers: dict[str, str],
) -> None:
    """A sync run, made as a stream so the execution id is known from the first event; it
    prints exactly what the plain sync call answers (the raw output of a completed run unless
    --detailed, else the detailed shape)."""
    last: list[Any] = [None]

    def on_event(kind: str, data: Any) -> None:
        follow.saw(data)
        if kind == "state":
            last[0] = data

    session.unbounded().stream(
        path,
        json_body=body,
        params={"version": params["version"]},
        headers=headers,
        on_event=on_event,
    )
    final = last[0]
    if not render.is_detailed(final) or final["state"] not in FINAL_OR_PAUSED:
        raise CliError(f"the server ended the stream before the execution did; {follow.how()}")
    state = final["state"]
    status = 500 if state == "FAILED" else 202 if state == "PAUSED" else 200
    answer = final.get("output") if state == "COMPLETED" and not detailed else final
    session.emit(answer, render.execution)
    _fail_on_outcome(status, final)


FINAL_OR_PAUSED = ("COMPLETED", "FAILED", "CANCELLED", "PAUSED")


def _fail_on_outcome(status: int, body: Any) -> None:
    if render.is_detailed(body) and body["state"] in ("FAILED", "CANCELLED"):
        error = body.get("error") or {}
        reason = f": {error.get('type')}: {error.get('message')}" if error else ""
        raise CliError(
            f"execution {body['execution_id']} {body['state'].lower()}{reason} ({status})"
        )


def _stream(
    session: Session,
    path: str,
    body: Any,
    params: dict[str, Any],
    follow: Follow,
    headers: dict[str, str],
) -> None:
    last: list[Any] = [None]

    def on_event(kind: str, data: Any) -> None:
        follow.saw(data)
        if kind == "state":
            last[0] = data
        if session.fmt == "json":
            click.echo(json.dumps({"event": kind, "data": data}, ensure_ascii=False))
        else:
            click.echo(render.event(kind, data))

    status = session.unbounded().stream(
        path, json_body=body, params=params, headers=headers, on_event=on_event
    )
    if session.fmt != "json" and render.is_detailed(last[0]):
        click.echo(render.execution(last[0]))
    _fail_on_outcome(status, last[0])


@workflow.command("run")
@click.argument("ref")
@click.argument("input_json", required=False, metavar="[INPUT_JSON]")
@click.option("--mode", type=MODES, default="sync", show_default=True)
@click.option("--version", type=click.IntRange(min=1), help="Run this version, not the latest.")
@click.option("--detailed", is_flag=True, help="Print execution metadata, not just the output.")
@IDEMPOTENCY_KEY
@WAIT
@client_command
def workflow_run(
    session: Session,
    ref: str,
    input_json: str | None,
    mode: str,
    version: int | None,
    detailed: bool,
    idempotency_key: str | None,
    wait: int | None,
) -> None:
    """Run a workflow. INPUT_JSON is inline JSON, '-' (stdin) or '@file'."""
    parsed = parse_ref(ref)
    path = _workflow_path(parsed, "run")
    body = read_input(input_json)
    _execute(session, parsed, path, body, mode, version, detailed, key=idempotency_key, wait=wait)


@workflow.command("resume")
@click.argument("ref")
@click.argument("execution_id")
@click.argument("input_json", required=False, metavar="[INPUT_JSON]")
@click.option("--mode", type=MODES, default="sync", show_default=True)
@click.option("--detailed", is_flag=True, help="Print execution metadata, not just the output.")
@IDEMPOTENCY_KEY
@WAIT
@client_command
def workflow_resume(
    session: Session,
    ref: str,
    execution_id: str,
    input_json: str | None,
    mode: str,
    detailed: bool,
    idempotency_key: str | None,
    wait: int | None,
) -> None:
    """Resume a paused execution; INPUT_JSON becomes the value pause() returns."""
    parsed = parse_ref(ref)
    path = _workflow_path(parsed, "resume", execution_id)
    body = read_input(input_json)
    _execute(
        session,
        parsed,
        path,
        body,
        mode,
        None,
        detailed,
        execution_id,
        key=idempotency_key,
        wait=wait,
    )


@workflow.command("status")
@click.argument("ref")
@click.argument("execution_id")
@client_command
def workflow_status(session: Session, ref: str, execution_id: str) -> None:
    """Show an execution's state and output."""
    response = session.client.request("GET", _workflow_path(parse_ref(ref), "status", execution_id))
    session.emit(response.body, render.execution)
