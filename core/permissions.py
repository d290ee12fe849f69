"""Who is calling and what they may do (SPEC §5), as pure functions over permission strings.

A permission is a colon-separated string such as `workflow:billing:invoice:run`. A granted
permission may use `*` as a whole segment to match any one segment; a `*` as the last segment
matches one or more remaining segments, so `workflow:billing:*` covers every action on every
billing workflow and `*` alone covers everything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from attrs import field, frozen

from core.errors import Forbidden, InvalidRequest
from core.model import WorkflowRef

ADMIN = "admin"
ANY = "*"

# Whitespace and commas would make a permission ambiguous in claims and config lists.
_PERMISSION = re.compile(r"[^\s,:]+(?::[^\s,:]+)*")


def _permission_set(values: Iterable[str]) -> frozenset[str]:
    if isinstance(values, str):  # a lone string would otherwise become a set of characters
        return frozenset((values,))
    return frozenset(values)


@frozen
class Principal:
    """An authenticated caller. `via` says how it was authenticated (for logs and audits)."""

    subject: str
    permissions: frozenset[str] = field(converter=_permission_set, factory=frozenset)
    via: str = "anonymous"  # "anonymous" | "open" | "api_key" | "jwt"


# The caller when auth is off, and the one an embedding application may act as.
EVERYONE = Principal(subject="anonymous", permissions=frozenset({ANY}), via="open")


def run_permission(ref: WorkflowRef) -> str:
    return f"workflow:{ref.namespace}:{ref.name}:run"


def validate_permission(text: object) -> str:
    """Refuse empty permissions, whitespace, commas and empty segments (e.g. `a::b`)."""
    if not isinstance(text, str) or not _PERMISSION.fullmatch(text):
        raise InvalidRequest(
            f"invalid permission {text!r}: use colon-separated segments without spaces or "
            "commas, e.g. 'workflow:billing:*' or 'admin'"
        )
    return text


def matches(pattern: str, permission: str) -> bool:
    """Whether one granted `pattern` covers the required `permission`."""
    if pattern == ANY:
        return True
    wanted = permission.split(":")
    granted = pattern.split(":")
    if granted[-1] == ANY and len(wanted) >= len(granted):
        # A trailing wildcard swallows the tail; compare only the fixed head.
        granted = granted[:-1]
        wanted = wanted[: len(granted)]
    elif len(granted) != len(wanted):
        return False
    return all(g == ANY or g == w for g, w in zip(granted, wanted, strict=True))


def grants(principal: Principal, permission: str) -> bool:
    return any(matches(pattern, permission) for pattern in principal.permissions)


def require(principal: Principal, permission: str) -> None:
    """Raise `Forbidden` naming the missing permission unless the principal holds it."""
    if not grants(principal, permission):
        raise Forbidden(f"permission {permission!r} is required", permission=permission)


def _claim(claims: Mapping[str, Any], name: str) -> Any:
    """A claim by name, or by a dotted path into nested objects (`realm_access.roles`)."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _strings(value: Any) -> list[str]:
    """Claims carry lists of strings, or one space-separated string as OAuth `scope` does."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list | tuple | set | frozenset):
        return [item for item in value if isinstance(item, str) and item]
    return []


def permissions_from_claims(
    claims: Mapping[str, Any],
    permissions_claim: str | None = "permissions",
    roles_claim: str | None = None,
    role_permissions: Mapping[str, Iterable[str]] | None = None,
) -> frozenset[str]:
    """The permissions a token's claims carry: the permissions claim as is, plus those that
    `role_permissions` maps the roles claim's roles to. Malformed entries are dropped, never
    widened."""
    found: set[str] = set()
    if permissions_claim:
        found.update(_strings(_claim(claims, permissions_claim)))
    if roles_claim and role_permissions:
        for role in _strings(_claim(claims, roles_claim)):
            found.update(_strings(role_permissions.get(role)))
    return frozenset(p for p in found if _PERMISSION.fullmatch(p))
