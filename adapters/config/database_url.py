"""Database URLs: the default embedded database and the spellings of a SQLite URL."""

from __future__ import annotations

import os
import re
from pathlib import Path

DEFAULT_DATABASE = Path(".flux") / "flux.db"


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def default_database_url(cwd: str | os.PathLike[str] | None = None) -> str:
    base = Path(cwd) if cwd is not None else Path.cwd()
    return _sqlite_url(base.absolute() / DEFAULT_DATABASE)


def sqlite_path(database_url: str) -> str | None:
    """The file path (or `:memory:`) of a `sqlite:///` URL, None for any other database.

    The `sqlite+aiosqlite://` spelling of older settings is still read the same way."""
    match = re.match(r"^sqlite(\+aiosqlite)?://(/?)(.*)$", database_url)
    if not match:
        return None
    rest = match.group(3)
    return rest or ":memory:"


def normalise_database_url(url: str, cwd: Path) -> str:
    """Relative SQLite paths are anchored at the working directory the settings were loaded
    in, so the server does not depend on where it later changes directory."""
    if "://" not in url and url != ":memory:":
        return _sqlite_url(cwd / Path(url).expanduser())
    path = sqlite_path(url)
    if path is None or path == ":memory:":
        return url
    return _sqlite_url(cwd / Path(path).expanduser())
