"""Options of the CLI's calls that say how a run or resume is made, not what it runs:
`--idempotency-key` (the `Idempotency-Key` header) and `--wait` (`Prefer: wait=N`)."""

from __future__ import annotations

import click

from core.errors import FluxError
from core.idempotency import KEY_HEADER, validate_key

IDEMPOTENCY_KEY = click.option(
    "--idempotency-key",
    metavar="KEY",
    help="Send this Idempotency-Key (1-255 visible ASCII characters): the same command again "
    "with the same key and input, within the server's window (24 h by default), starts nothing "
    "and prints what the first one got. Safe to retry after a timeout or lost connection.",
)
WAIT = click.option(
    "--wait",
    type=click.IntRange(0, 86_400),
    metavar="SECONDS",
    help="Sync mode: wait at most this long (sends 'Prefer: wait=SECONDS'); a run not settled "
    "by then is printed in its current state and goes on.",
)


def call_headers(key: str | None, wait: int | None) -> dict[str, str]:
    """`Idempotency-Key` (checked here, so a bad one is refused before anything is sent) and
    `Prefer: wait=N`."""
    headers: dict[str, str] = {}
    if key is not None:
        try:
            headers[KEY_HEADER] = validate_key(key)
        except FluxError as exc:
            raise click.BadParameter(exc.message, param_hint="--idempotency-key") from None
    if wait is not None:
        headers["Prefer"] = f"wait={wait}"
    return headers
