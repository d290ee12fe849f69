"""The `flux` command: start the server, manage workflows and services, run workflows.

Client commands talk to the main server over its HTTP API only. Every failure ends as one
`error: ...` line on stderr with exit code 1 (server or network) or 2 (usage).

This module holds the root group and wires the command groups into it; each group lives in
its own module (`workflows`, `services`, `start`, `auth`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from adapters.cli.auth import auth
from adapters.cli.executions import execution
from adapters.cli.failures import describe
from adapters.cli.services import service
from adapters.cli.start import service_start, start
from adapters.cli.workflows import workflow
from adapters.version import VERSION


class FluxGroup(click.Group):
    """The root group: turns every click error into a single stderr line."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
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
        except KeyboardInterrupt:
            _die("interrupted", 130)
        except Exception as exc:
            # The failures we can name (an address in use, a damaged database, an unreachable
            # database server, any FluxError) are one line too; anything else is a bug and
            # keeps its traceback.
            line = describe(exc)
            if line is None:
                raise
            _die(line, 1)
        sys.exit(result if isinstance(result, int) else 0)


def _die(message: str, code: int) -> NoReturn:
    click.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(code)


@click.group(cls=FluxGroup)
@click.version_option(VERSION, prog_name="flux")
def cli() -> None:
    """Flux: Python workflows as durable REST microservices and MCP tools."""


cli.add_command(start)
cli.add_command(workflow)
cli.add_command(execution)
# `flux service start` runs a process, so it is written with the other processes.
service.add_command(service_start)
cli.add_command(service)
cli.add_command(auth)

if __name__ == "__main__":
    cli(prog_name="flux")
