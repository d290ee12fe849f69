"""What `flux workflow register` uploads: the modules named by its FILE arguments, read with a
bound.

A FILE is a module or a directory (every `*.py` directly in it, sorted by name). Only regular
files are read, and never more than the upload limit (`max_upload_bytes`) plus one byte in
all, so `/dev/zero`, a FIFO or a huge file is refused at once instead of read forever.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import click

# (name sent to the server, source)
Module = tuple[str, bytes]


def collect(files: tuple[Path, ...], limit: int) -> list[Module]:
    """The modules to upload, each named by its path relative to its directory argument, or to
    the common directory of the files given one by one."""
    named: list[tuple[str, Path]] = []
    loose: list[Path] = []
    for file in files:
        kind = _kind(file)
        if kind == "dir":
            found = sorted(p for p in file.iterdir() if p.suffix == ".py" and _kind(p) == "file")
            if not found:
                raise click.BadParameter(f"{file} holds no *.py file", param_hint="'FILE'")
            named.extend((p.relative_to(file).as_posix(), p) for p in found)
        else:
            loose.append(file)
    if loose:
        base = Path(os.path.commonpath([p.resolve().parent for p in loose]))
        named.extend((p.resolve().relative_to(base).as_posix(), p) for p in loose)
    seen: dict[str, Path] = {}
    for name, path in named:
        if name in seen:
            raise click.BadParameter(
                f"{seen[name]} and {path} would both be uploaded as {name!r}", param_hint="'FILE'"
            )
        seen[name] = path
    modules: list[Module] = []
    left = limit
    for name, path in named:
        source = _read(path, left + 1)
        if len(source) > left:
            raise click.BadParameter(
                f"{path} takes the upload past max_upload_bytes ({limit} bytes)",
                param_hint="'FILE'",
            )
        left -= len(source)
        modules.append((name, source))
    return modules


def _kind(path: Path) -> str:
    """`file` or `dir`; anything else (missing, a device, a FIFO, a socket) is refused."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read {path}: {(exc.strerror or str(exc)).lower()}", param_hint="'FILE'"
        ) from None
    if stat.S_ISDIR(mode):
        return "dir"
    if not stat.S_ISREG(mode):
        raise click.BadParameter(f"{path} is not a regular file", param_hint="'FILE'")
    return "file"


def _read(path: Path, at_most: int) -> bytes:
    try:
        # O_NONBLOCK: should the file have turned into a FIFO since it was checked, opening it
        # does not wait for a writer.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise click.BadParameter(f"{path} is not a regular file", param_hint="'FILE'")
            return handle.read(at_most)
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read {path}: {(exc.strerror or str(exc)).lower()}", param_hint="'FILE'"
        ) from None
