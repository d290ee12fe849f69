"""The `flux` command: start the server, manage workflows and services, run workflows.

Client commands talk to the main server over its HTTP API only. Every failure ends as one
`error: ...` line on stderr with exit code 1 (server or network) or 2 (usage).
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from attrs import frozen

from adapters.cli import render
from adapters.cli.auth import auth as auth_commands
from adapters.cli.client import ApiError, CliError, FluxClient, path_of
from adapters.config import ConfigError, Settings, StandaloneOptions, load_settings
from core.errors import InvalidName
from core.model import WorkflowRef
from core.names import validate_namespace, validate_service_name


class FluxGroup(click.Group):
    """The root group: turns every click error into a single stderr line."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            _die(exc.format_message() + hint, exc.exit_code)
        except click.ClickException as exc:
            _die(exc.format_message(), exc.exit_code)
        except click.Abort:
            _die("aborted", 1)
        sys.exit(result if isinstance(result, int) else 0)


def _die(message: str, code: int) -> None:
    click.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(code)


def _settings(overrides: dict[str, Any] | None = None) -> Settings:
    try:
        return load_settings(overrides or {})
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


# --- shared options --------------------------------------------------------------------------


@frozen
class Session:
    """What a client command needs: where the server is and how to print."""

    client: FluxClient
    fmt: str

    def emit(self, body: Any, text: Callable[[Any], str]) -> None:
        click.echo(render.as_json(body) if self.fmt == "json" else text(body))

    def note(self, text: str) -> None:
        """A line for people only: never mixed into JSON output."""
        if self.fmt != "json":
            click.echo(text)


def client_command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add `--server-url`, `--format` and `--api-key` and pass a `Session` first."""

    @click.option(
        "--server-url",
        metavar="URL",
        help="Flux server to talk to (default: server_url from settings, http://localhost:8000).",
    )
    @click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="json prints the HTTP API's body unchanged.",
    )
    @click.option(
        "--api-key",
        envvar="FLUX_API_KEY",
        show_envvar=True,
        metavar="KEY",
        help="Sent as 'Authorization: Bearer KEY'.",
    )
    @functools.wraps(fn)
    def wrapper(*args: Any, server_url: str | None, fmt: str, api_key: str | None, **kw: Any):
        if server_url is None:
            server_url = _settings().server_url
        elif not re.match(r"^https?://[^/\s]+", server_url):
            raise click.BadParameter(
                f"expected an http(s) URL, got {server_url!r}", param_hint="'--server-url'"
            )
        session = Session(FluxClient(server_url, api_key or None), fmt)
        return fn(session, *args, **kw)

    return wrapper


def _ref(text: str) -> WorkflowRef:
    try:
        return WorkflowRef.parse(text)
    except InvalidName as exc:
        raise click.BadParameter(exc.message) from None


def _check_refs(refs: tuple[str, ...], option: str) -> None:
    for text in refs:
        try:
            WorkflowRef.parse(text)
        except InvalidName as exc:
            raise click.BadParameter(exc.message, param_hint=option) from None


def _check_namespaces(namespaces: tuple[str, ...]) -> None:
    for namespace in namespaces:
        try:
            validate_namespace(namespace)
        except InvalidName as exc:
            raise click.BadParameter(exc.message, param_hint="'--namespace'") from None


def _check_service(name: str) -> None:
    try:
        validate_service_name(name)
    except InvalidName as exc:
        raise click.BadParameter(exc.message, param_hint="'NAME'") from None


def _input(text: str | None) -> Any:
    """INPUT_JSON: inline JSON, `-` for stdin, or `@file`; absent means JSON null."""
    if text is None:
        return None
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise click.BadParameter(f"cannot read {text[1:]}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc.msg} at {exc.pos}") from None


def _confirm(what: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise click.UsageError(f"refusing to delete {what} without confirmation: pass --yes")
    click.confirm(f"Delete {what}?", abort=True, err=True)


# --- the command tree ------------------------------------------------------------------------


@click.group(cls=FluxGroup)
@click.version_option("0.1.0", prog_name="flux")
def cli() -> None:
    """Flux: Python workflows as durable REST microservices and MCP tools."""


@cli.group()
def start() -> None:
    """Run the Flux server."""


@start.command("server")
@click.option("--host", help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 8000).")
@click.option("--database-url", metavar="URL", help="sqlite:///path (default .flux/flux.db).")
@click.option(
    "--workers",
    type=int,
    help="Threads for def workflows and ones caught blocking the loop (default 4).",
)
@click.option(
    "--executor",
    type=click.Choice(["embedded", "workers"]),
    default="embedded",
    show_default=True,
    help="embedded: run executions in this process (one server per database); workers: only "
    "store them for 'flux start worker' processes (any number of replicas).",
)
def start_server(
    host: str | None,
    port: int | None,
    database_url: str | None,
    workers: int | None,
    executor: str,
) -> None:
    """Run the main server until SIGINT or SIGTERM."""
    settings = _settings(
        {"host": host, "port": port, "database_url": database_url, "workers": workers}
    )
    try:
        from adapters.bootstrap import serve
    except ImportError as exc:
        raise CliError(f"the server is not available in this installation: {exc}") from None
    serve(settings, executor)


@start.command("worker")
@click.option("--database-url", metavar="URL", help="The servers' database (postgresql://...).")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Executions run at the same time.",
)
@click.option(
    "--lease-seconds",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="How long a claim lasts without a heartbeat before another worker may take over.",
)
def start_worker(database_url: str | None, concurrency: int, lease_seconds: float) -> None:
    """Claim and run executions stored by servers started with '--executor workers', until
    SIGINT or SIGTERM."""
    import asyncio
    import logging

    from adapters.bootstrap import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = _settings({"database_url": database_url})

    def ready(worker: Any) -> None:
        click.echo(f"flux worker {worker.owner} ready (concurrency {concurrency})")

    asyncio.run(run_worker(settings, concurrency=concurrency, lease=lease_seconds, ready=ready))


# --- workflows -------------------------------------------------------------------------------


@cli.group()
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
        _check_namespaces((namespace,))
    response = session.client.request("GET", "/workflows", params={"namespace": namespace})
    session.emit(response.body, render.workflow_list)


@workflow.command("show")
@click.argument("ref")
@client_command
def workflow_show(session: Session, ref: str) -> None:
    """Show a workflow's versions and input schema."""
    response = session.client.request("GET", _workflow_path(_ref(ref)))
    session.emit(response.body, render.workflow_detail)


@workflow.command("delete")
@click.argument("ref")
@click.option("--version", type=click.IntRange(min=1), help="Delete only this version.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@client_command
def workflow_delete(session: Session, ref: str, version: int | None, yes: bool) -> None:
    """Delete a workflow (every version, or one with --version)."""
    parsed = _ref(ref)
    what = f"{parsed} v{version}" if version else f"every version of {parsed}"
    _confirm(what, yes)
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
    parsed = _ref(ref)
    _execute(session, _workflow_path(parsed, "run"), _input(input_json), mode, version, detailed)


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
    path = _workflow_path(_ref(ref), "resume", execution_id)
    _execute(session, path, _input(input_json), mode, None, detailed)


@workflow.command("status")
@click.argument("ref")
@click.argument("execution_id")
@client_command
def workflow_status(session: Session, ref: str, execution_id: str) -> None:
    """Show an execution's state and output."""
    response = session.client.request("GET", _workflow_path(_ref(ref), "status", execution_id))
    session.emit(response.body, render.execution)


# --- services --------------------------------------------------------------------------------


@cli.group()
def service() -> None:
    """Expose workflows as a REST (and MCP) service."""


def _update(session: Session, name: str, changes: dict[str, Any]) -> None:
    _check_service(name)
    response = session.client.request("PUT", path_of("services", name), json_body=changes)
    session.note(f"Service '{name}' updated.")
    session.emit(response.body, render.service_detail)


NAMESPACE_OPT = click.option(
    "--namespace", "namespaces", multiple=True, metavar="NS", help="Namespace selector."
)
WORKFLOW_OPT = click.option(
    "--workflow", "workflows", multiple=True, metavar="REF", help="Workflow selector."
)


@service.command("create")
@click.argument("name")
@NAMESPACE_OPT
@WORKFLOW_OPT
@click.option("--exclude", "exclusions", multiple=True, metavar="REF", help="Leave REF out.")
@click.option("--mcp", is_flag=True, help="Expose the endpoints as MCP tools too.")
@client_command
def service_create(
    session: Session,
    name: str,
    namespaces: tuple[str, ...],
    workflows: tuple[str, ...],
    exclusions: tuple[str, ...],
    mcp: bool,
) -> None:
    """Create service NAME from namespace and workflow selectors."""
    _check_service(name)
    _check_namespaces(namespaces)
    _check_refs(workflows, "'--workflow'")
    _check_refs(exclusions, "'--exclude'")
    body = {
        "name": name,
        "namespaces": list(namespaces),
        "workflows": list(workflows),
        "exclusions": list(exclusions),
        "mcp_enabled": mcp,
    }
    response = session.client.request("POST", "/services", json_body=body)
    session.note(f"Service '{name}' created.")
    session.emit(response.body, render.service_detail)


def _selector_change(verb: str):
    def command(
        session: Session, name: str, namespaces: tuple[str, ...], workflows: tuple[str, ...]
    ) -> None:
        if not namespaces and not workflows:
            raise click.UsageError("give at least one --namespace or --workflow")
        _check_namespaces(namespaces)
        _check_refs(workflows, "'--workflow'")
        changes = {
            f"{verb}_namespaces": list(namespaces),
            f"{verb}_workflows": list(workflows),
        }
        _update(session, name, changes)

    return command


service.command("add", help="Add namespace or workflow selectors to service NAME.")(
    click.argument("name")(NAMESPACE_OPT(WORKFLOW_OPT(client_command(_selector_change("add")))))
)
service.command("remove", help="Remove namespace or workflow selectors from service NAME.")(
    click.argument("name")(NAMESPACE_OPT(WORKFLOW_OPT(client_command(_selector_change("remove")))))
)


@service.command("exclude")
@click.argument("name")
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@client_command
def service_exclude(session: Session, name: str, refs: tuple[str, ...]) -> None:
    """Leave workflow REF out of service NAME."""
    _check_refs(refs, "'REF'")
    _update(session, name, {"add_exclusions": list(refs)})


@service.command("include")
@click.argument("name")
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@client_command
def service_include(session: Session, name: str, refs: tuple[str, ...]) -> None:
    """Undo an exclusion of REF in service NAME."""
    _check_refs(refs, "'REF'")
    _update(session, name, {"remove_exclusions": list(refs)})


@service.command("update")
@click.argument("name")
@click.option("--mcp/--no-mcp", default=None, help="Turn MCP tools on or off.")
@client_command
def service_update(session: Session, name: str, mcp: bool | None) -> None:
    """Change service NAME's settings."""
    if mcp is None:
        raise click.UsageError("nothing to update: give --mcp or --no-mcp")
    _update(session, name, {"mcp_enabled": mcp})


@service.command("list")
@client_command
def service_list(session: Session) -> None:
    """List services."""
    response = session.client.request("GET", "/services")
    session.emit(response.body, render.service_list)


@service.command("show")
@click.argument("name")
@client_command
def service_show(session: Session, name: str) -> None:
    """Show a service's selectors and what they resolve to now."""
    _check_service(name)
    response = session.client.request("GET", path_of("services", name))
    session.emit(response.body, render.service_detail)


@service.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@client_command
def service_delete(session: Session, name: str, yes: bool) -> None:
    """Delete service NAME (its workflows stay registered)."""
    _check_service(name)
    _confirm(f"service '{name}'", yes)
    response = session.client.request("DELETE", path_of("services", name))
    session.emit(response.body, lambda _: f"Deleted service '{name}'.")


@service.command("start")
@click.argument("name")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to bind.")
@click.option("--port", default=9000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--server-url", metavar="URL", help="Main Flux server (default: from settings).")
@click.option(
    "--cache-ttl",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds an endpoint list is reused.",
)
@click.option("--mcp/--no-mcp", default=None, help="Override the service's stored MCP setting.")
@click.option("--mcp-issuer", metavar="URL", help="IdP issuer; turns on MCP token checks.")
@click.option("--mcp-audience", help="Expected 'aud' of MCP tokens.")
@click.option("--mcp-jwks-uri", metavar="URL", help="JWKS URL (default: discovered).")
@click.option("--mcp-base-url", metavar="URL", help="Public base URL behind a proxy.")
@click.option(
    "--mcp-forward-token",
    is_flag=True,
    default=False,
    help="Send MCP callers' tokens on to the server (default: FLUX_API_KEY is sent).",
)
@click.option(
    "--upstream-timeout",
    default=300.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds to wait for the main server.",
)
def service_start(
    name: str,
    host: str,
    port: int,
    server_url: str | None,
    cache_ttl: float,
    mcp: bool | None,
    mcp_issuer: str | None,
    mcp_audience: str | None,
    mcp_jwks_uri: str | None,
    mcp_base_url: str | None,
    mcp_forward_token: bool,
    upstream_timeout: float,
) -> None:
    """Serve service NAME on its own (root-level URLs, forwards to the server)."""
    settings = _settings()
    try:
        options = StandaloneOptions(
            settings=settings,
            service=name,
            host=host,
            port=port,
            server_url=server_url or settings.server_url,
            cache_ttl=cache_ttl,
            mcp=mcp,
            mcp_issuer=mcp_issuer,
            mcp_audience=mcp_audience,
            mcp_jwks_uri=mcp_jwks_uri,
            mcp_base_url=mcp_base_url,
            mcp_forward_token=mcp_forward_token,
            upstream_timeout=upstream_timeout,
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        from adapters.http.standalone import serve_standalone
    except ImportError as exc:
        raise CliError(f"the standalone process is not available: {exc}") from None
    serve_standalone(options)


cli.add_command(auth_commands)

if __name__ == "__main__":
    cli(prog_name="flux")
