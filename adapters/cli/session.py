"""What every client command shares: the settings, the `--server-url/--format/--api-key`
options, and the `Session` they become."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import click
from attrs import frozen

from adapters.cli import render
from adapters.cli.client import ApiError, FluxClient
from adapters.config import ConfigError, Settings, load_settings


def load(overrides: dict[str, Any] | None = None) -> Settings:
    """The settings, with a bad one reported as a usage error (exit code 2)."""
    try:
        return load_settings(overrides or {})
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


@frozen
class Session:
    """What a client command needs: where the server is and how to print."""

    client: FluxClient
    fmt: str
    # `--timeout` as typed (None: not given): sync runs wait as long as the run takes unless
    # it is given.
    timeout: float | None = None

    def unbounded(self) -> FluxClient:
        """The client for a call that waits for a run: bounded only by an explicit --timeout."""
        return self.client.with_timeout(self.timeout)

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
    # No envvar here: FLUX_API_KEY is a setting (`api_key`), read with the others by
    # load_settings, so the environment and flux.toml are consulted in one place.
    @click.option(
        "--api-key",
        metavar="KEY",
        help="Sent as 'Authorization: Bearer KEY' (default: api_key from settings: "
        "FLUX_API_KEY or flux.toml).",
    )
    @click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        metavar="SECONDS",
        help="Give up when the server has not answered within SECONDS (default: client_timeout "
        "from settings, 30; a sync run or resume waits as long as the run takes).",
    )
    @functools.wraps(fn)
    def wrapper(
        *args: Any,
        server_url: str | None,
        fmt: str,
        api_key: str | None,
        timeout: float | None,
        **kw: Any,
    ) -> Any:
        if server_url is not None and not re.match(r"^https?://[^/\s]+", server_url):
            raise click.BadParameter(
                f"expected an http(s) URL, got {server_url!r}", param_hint="'--server-url'"
            )
        # Settings are only loaded when a flag leaves something to them; an explicit empty
        # `--api-key ''` still means "send no key".
        wait = timeout
        if server_url is None or api_key is None or wait is None:
            settings = load()
            server_url = settings.server_url if server_url is None else server_url
            api_key = settings.api_key if api_key is None else api_key
            wait = settings.client_timeout if wait is None else wait
        session = Session(FluxClient(server_url, api_key or None, wait), fmt, timeout)
        try:
            return fn(session, *args, **kw)
        except ApiError as exc:
            # Scripts get the error body as JSON on stdout; the one line still goes to stderr.
            if fmt == "json" and exc.body is not None:
                click.echo(render.as_json(exc.body))
            raise

    return wrapper
