"""Outside names of settings (flux.toml keys, FLUX_* variables) and the attribute paths they map to.

They differ in one place, the seed's `security.auth` table, which is `Settings.auth` inside.
"""

from __future__ import annotations

_OUTSIDE = {("auth",): ("security", "auth")}


def outside(path: tuple[str, ...]) -> tuple[str, ...]:
    for inner, outer in _OUTSIDE.items():
        if path[: len(inner)] == inner:
            return outer + path[len(inner) :]
    return path


def inside(path: tuple[str, ...]) -> tuple[str, ...]:
    for inner, outer in _OUTSIDE.items():
        if path[: len(outer)] == outer:
            return inner + path[len(outer) :]
    return path


def dotted(path: tuple[str, ...]) -> str:
    """The name a user writes: `security.auth.oidc.issuer` for ("auth", "oidc", "issuer")."""
    return ".".join(outside(path))
