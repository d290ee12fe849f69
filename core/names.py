"""Validation of service names, namespaces and workflow names (SPEC §2)."""

from __future__ import annotations

import keyword
import re

from core.errors import InvalidName

DEFAULT_NAMESPACE = "default"
MAX_WORKFLOW_NAME = 64

# Matched with `fullmatch`: `re.match` with `$` also accepts a name followed by one newline. Both
# patterns are ASCII-only, so no control character (or other non-ASCII) is ever part of a name.
_SERVICE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def validate_service_name(name: object) -> str:
    if not isinstance(name, str) or not _SERVICE_NAME.fullmatch(name):
        raise InvalidName(
            f"invalid service name {name!r}: use 1-64 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def validate_namespace(namespace: object) -> str:
    if not isinstance(namespace, str) or not _SERVICE_NAME.fullmatch(namespace):
        raise InvalidName(
            f"invalid namespace {namespace!r}: use 1-64 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return namespace


def validate_workflow_name(name: object) -> str:
    if (
        not isinstance(name, str)
        or len(name) > MAX_WORKFLOW_NAME
        or not _IDENTIFIER.fullmatch(name)
        or keyword.iskeyword(name)
    ):
        raise InvalidName(
            f"invalid workflow name {name!r}: use a Python identifier of at most "
            f"{MAX_WORKFLOW_NAME} characters"
        )
    return name
