"""Parsing and checking of what users type: refs, names, INPUT_JSON, delete confirmations.

Names and refs are checked with the server's own rules before anything is sent, so a typo is
a usage error (exit code 2) naming the argument, not a round trip.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from core.errors import InvalidName
from core.model import WorkflowRef
from core.names import validate_namespace, validate_service_name


def parse_ref(text: str) -> WorkflowRef:
    try:
        return WorkflowRef.parse(text)
    except InvalidName as exc:
        raise click.BadParameter(exc.message) from None


def check_refs(refs: tuple[str, ...], option: str) -> None:
    for text in refs:
        try:
            WorkflowRef.parse(text)
        except InvalidName as exc:
            raise click.BadParameter(exc.message, param_hint=option) from None


def check_namespaces(namespaces: tuple[str, ...]) -> None:
    for namespace in namespaces:
        try:
            validate_namespace(namespace)
        except InvalidName as exc:
            raise click.BadParameter(exc.message, param_hint="'--namespace'") from None


def check_service(name: str) -> None:
    try:
        validate_service_name(name)
    except InvalidName as exc:
        raise click.BadParameter(exc.message, param_hint="'NAME'") from None


def read_input(text: str | None) -> Any:
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


def confirm_delete(what: str, yes: bool) -> None:
    """Ask on a terminal; without one, refuse unless `--yes` (a script never deletes by
    accident)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise click.UsageError(f"refusing to delete {what} without confirmation: pass --yes")
    click.confirm(f"Delete {what}?", abort=True, err=True)
