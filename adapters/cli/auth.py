"""`flux auth key ...`: API keys, managed on the server's database itself.

These commands open the database named by the settings (`database_url`) instead of calling the
HTTP API, so the very first admin key can be made before anyone is able to authenticate. Run
them where the server's database is (same working directory or `flux.toml`, or
`--database-url`); a running server sees a new or revoked key on its next request.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from adapters.auth.api_keys import ApiKeys
from adapters.cli import render
from adapters.cli.failures import one_line
from adapters.config import ConfigError, load_settings
from core.errors import AlreadyExists, InvalidRequest, NotFound
from ports.auth import ApiKey

T = TypeVar("T")


def _database_url(database_url: str | None) -> str:
    try:
        return load_settings({"database_url": database_url}).database_url
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def _with_keys(database_url: str | None, job: Callable[[ApiKeys], Awaitable[T]]) -> T:
    url = _database_url(database_url)

    async def run() -> T:
        # Imported here: only these commands need the storage adapters.
        from adapters.storage.factory import open_storage

        try:
            storage = await open_storage(url)
        except ValueError as exc:  # an unsupported or unusable database URL
            raise click.UsageError(str(exc)) from None
        try:
            return await job(ApiKeys(storage.api_keys))
        finally:
            await storage.close()

    with one_line(database_url=url):
        try:
            return asyncio.run(run())
        except InvalidRequest as exc:
            raise click.UsageError(exc.message) from None
        except (AlreadyExists, NotFound) as exc:
            raise click.ClickException(exc.message) from None


def key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "name": key.name,
        "permissions": sorted(key.permissions),
        "revoked": key.revoked,
        "created_at": key.created_at,
    }


def _when(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _database_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--database-url",
        metavar="URL",
        help="The server's database: sqlite:///path or postgresql://... (default: settings).",
    )(fn)


def _format_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
    )(fn)


@click.group()
def auth() -> None:
    """Credentials for a server with auth enabled."""


@auth.group()
def key() -> None:
    """Create, list and revoke API keys (directly on the server's database)."""


@key.command("create")
@click.argument("name")
@click.option(
    "--permission",
    "-p",
    "permissions",
    multiple=True,
    metavar="PERMISSION",
    help="Grant a permission, e.g. admin or 'workflow:billing:*' (repeatable).",
)
@_database_option
@_format_option
def key_create(name: str, permissions: tuple[str, ...], database_url: str | None, fmt: str) -> None:
    """Create key NAME and print its secret: it is shown this once, never again."""
    created = _with_keys(database_url, lambda keys: keys.create(name, permissions))
    if fmt == "json":
        click.echo(render.as_json({**key_json(created.key), "secret": created.secret}))
        return
    granted = ", ".join(sorted(created.key.permissions)) or "none (reads only)"
    click.echo(
        f"Created API key '{created.key.name}' ({created.key.key_id}); permissions: {granted}.",
        err=True,
    )
    click.echo("Store the secret now: it cannot be shown again.", err=True)
    # Alone on stdout, so `KEY=$(flux auth key create ...)` captures just the secret.
    click.echo(created.secret)


@key.command("list")
@_database_option
@_format_option
def key_list(database_url: str | None, fmt: str) -> None:
    """List keys (never their secrets), revoked ones included."""
    found = _with_keys(database_url, lambda keys: keys.list())
    if fmt == "json":
        click.echo(render.as_json({"keys": [key_json(k) for k in found]}))
        return
    if not found:
        click.echo("No API keys.")
        return
    rows = [
        (
            k.name,
            k.key_id,
            "revoked" if k.revoked else "active",
            _when(k.created_at),
            ", ".join(sorted(k.permissions)) or "-",
        )
        for k in found
    ]
    header = ("NAME", "ID", "STATUS", "CREATED", "PERMISSIONS")
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header) - 1)]
    for row in (header, *rows):
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]))


@key.command("revoke")
@click.argument("name")
@_database_option
@_format_option
def key_revoke(name: str, database_url: str | None, fmt: str) -> None:
    """Revoke the key NAME (or key id): refused with 401 from the next request on."""
    revoked = _with_keys(database_url, lambda keys: keys.revoke(name))
    if fmt == "json":
        click.echo(render.as_json(key_json(revoked)))
    else:
        click.echo(f"Revoked API key '{revoked.name}' ({revoked.key_id}).")
