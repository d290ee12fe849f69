"""`flux service ...`: create and edit services on the main server.

`flux service start`, which runs a standalone process rather than calling the API, lives with
the other long-running processes in `start.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from adapters.cli import render
from adapters.cli.arguments import check_namespaces, check_refs, check_service, confirm_delete
from adapters.cli.client import path_of
from adapters.cli.session import Session, client_command


@click.group()
def service() -> None:
    """Expose workflows as a REST (and MCP) service."""


def _update(session: Session, name: str, changes: dict[str, Any]) -> None:
    check_service(name)
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
    check_service(name)
    check_namespaces(namespaces)
    check_refs(workflows, "'--workflow'")
    check_refs(exclusions, "'--exclude'")
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


def _selector_change(verb: str) -> Callable[..., None]:
    """`add` and `remove` differ only in the verb of the PUT's fields."""

    def command(
        session: Session, name: str, namespaces: tuple[str, ...], workflows: tuple[str, ...]
    ) -> None:
        if not namespaces and not workflows:
            raise click.UsageError("give at least one --namespace or --workflow")
        check_namespaces(namespaces)
        check_refs(workflows, "'--workflow'")
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
    check_refs(refs, "'REF'")
    _update(session, name, {"add_exclusions": list(refs)})


@service.command("include")
@click.argument("name")
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@client_command
def service_include(session: Session, name: str, refs: tuple[str, ...]) -> None:
    """Undo an exclusion of REF in service NAME."""
    check_refs(refs, "'REF'")
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
    check_service(name)
    response = session.client.request("GET", path_of("services", name))
    session.emit(response.body, render.service_detail)


@service.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@client_command
def service_delete(session: Session, name: str, yes: bool) -> None:
    """Delete service NAME (its workflows stay registered)."""
    check_service(name)
    confirm_delete(f"service '{name}'", yes)
    response = session.client.request("DELETE", path_of("services", name))
    session.emit(response.body, lambda _: f"Deleted service '{name}'.")
