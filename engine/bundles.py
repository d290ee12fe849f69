"""Bundles: several modules registered together, which import each other by name.

A bundle is stored as one text (`encode_bundle`'s JSON) that `load_workflows` recognises. Its
modules load as submodules of a fresh package with a unique name, found by one `sys.meta_path`
finder that answers only for the packages of the loads under way; their imports of each other's
names are redirected there by an `__import__` of their own, so nothing global is ever named
`helpers`, and two versions (or two concurrent loads) never share a module.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.abc
import importlib.machinery
import json
import sys
import threading
import types
from collections.abc import Mapping, Sequence
from typing import Any

from core.errors import InvalidWorkflowSource

BUNDLE_FORMAT = 1
MAX_BUNDLE_FILES = 100
_BUNDLE_KEY = "flux_bundle"


def encode_bundle(files: Mapping[str, str]) -> str:
    """The stored text of a bundle: JSON `{"flux_bundle": 1, "files": {name: source}}`, names
    sorted, so the same files give the same text (and hash) whatever order they came in.

    Raises InvalidWorkflowSource when a file name is not a relative `*.py` path (no `..`, no
    absolute or empty parts, no control characters), two names are one module, or there are
    no files or more than MAX_BUNDLE_FILES."""
    _bundle_modules(files)
    return json.dumps(
        {_BUNDLE_KEY: BUNDLE_FORMAT, "files": dict(sorted(files.items()))},
        ensure_ascii=False,
        indent=1,
    )


def decode_bundle(source: str) -> dict[str, str] | None:
    """The files of a bundle's stored text; None when `source` is one plain module."""
    # A module that is only a dict literal defines no workflow: no stored module looks like this.
    if not source.startswith("{") or f'"{_BUNDLE_KEY}"' not in source[:64]:
        return None
    try:
        decoded = json.loads(source)
    except ValueError:
        return None
    if not isinstance(decoded, dict) or _BUNDLE_KEY not in decoded:
        return None
    files = decoded.get("files")
    if (
        decoded[_BUNDLE_KEY] != BUNDLE_FORMAT
        or not isinstance(files, dict)
        or not all(isinstance(text, str) for text in files.values())
    ):
        raise InvalidWorkflowSource(f"not a bundle of format {BUNDLE_FORMAT}")
    _bundle_modules(files)
    return files


def bundle_source(files: Mapping[str, str]) -> tuple[str, str]:
    """(source, filename) to register for uploaded files: one file stays a plain module, as
    it always was; several become a bundle, named after the first for messages."""
    if len(files) == 1:
        ((filename, source),) = files.items()
        return source, filename
    encoded = encode_bundle(files)
    return encoded, next(iter(files))


def _bundle_modules(files: Mapping[str, str]) -> dict[str, tuple[str, bool]]:
    """Module name -> (file name, is a package's __init__) of each file of a bundle."""
    if not files:
        raise InvalidWorkflowSource("a bundle needs at least one file")
    if len(files) > MAX_BUNDLE_FILES:
        raise InvalidWorkflowSource(
            f"a bundle holds at most {MAX_BUNDLE_FILES} files, not {len(files)}"
        )
    modules: dict[str, tuple[str, bool]] = {}
    for filename in files:
        parts = _module_parts(filename)
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        if name in modules:
            raise InvalidWorkflowSource(
                f"{filename} and {modules[name][0]} are both module '{name}'", filename=filename
            )
        modules[name] = (filename, is_package)
    for name, (filename, _) in modules.items():
        parent = name.rpartition(".")[0]
        if parent in modules and not modules[parent][1]:
            raise InvalidWorkflowSource(
                f"{filename} needs '{parent}' to be a package, but {modules[parent][0]} is a"
                " module",
                filename=filename,
            )
    return modules


def _module_parts(filename: Any) -> list[str]:
    def refuse(why: str) -> InvalidWorkflowSource:
        return InvalidWorkflowSource(f"bad file name {filename!r} in a bundle: {why}")

    if not isinstance(filename, str) or not filename:
        raise refuse("empty")
    if any(ord(char) < 32 or ord(char) == 127 for char in filename):
        raise refuse("control characters")
    if filename.startswith("/") or "\\" in filename or ":" in filename:
        raise refuse("it must be a relative path with '/' between its parts")
    parts = filename.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise refuse("empty, '.' or '..' parts")
    if not parts[-1].endswith(".py") or parts[-1] == ".py":
        raise refuse("not a .py file")
    parts[-1] = parts[-1][: -len(".py")]
    if any("." in part for part in parts):
        raise refuse("a module or directory name cannot contain '.'")
    return parts


class _BundleFinder(importlib.abc.MetaPathFinder):
    """Finds the modules of the bundles being loaded, each under its load's unique package;
    installed once, it answers nothing for any other name."""

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        root, _, name = fullname.partition(".")
        load = _loads.get(root)
        return None if load is None or not name else load.spec(name)


_loads: dict[str, _BundleLoad] = {}  # unique package name -> the load under way
_loads_lock = threading.Lock()
_finder = _BundleFinder()


class _BundleLoad(importlib.abc.Loader):
    """One load of one bundle: its modules, fresh, under the unique package `root`."""

    def __init__(self, root: str, files: Mapping[str, str], codes: dict[str, types.CodeType]):
        self.root = root
        self.codes = codes
        self.modules = _bundle_modules(files)
        self.packages = {  # directories: packages, with or without an __init__.py
            ".".join(name.split(".")[:depth])
            for name in self.modules
            for depth in range(1, name.count(".") + 1)
        }
        self.tops = {name.partition(".")[0] for name in self.modules if name}
        # The bundle's own package; a top-level __init__.py (a directory sent whole) runs in it.
        top = self.modules.get("")
        self.package = types.ModuleType(root)
        self.package.__path__ = []
        self.package.__package__ = root
        self.package.__spec__ = importlib.machinery.ModuleSpec(
            root, self, origin=top and top[0], is_package=True
        )
        if top is not None:
            self.package.__file__ = top[0]
        self.loaded: dict[str, types.ModuleType] = {}
        self.done = False  # every module executed: imports are answered from `loaded`
        self.builtins = {**vars(builtins), "__import__": self.import_}

    def spec(self, name: str) -> importlib.machinery.ModuleSpec | None:
        found = self.modules.get(name)
        if found is None and name not in self.packages:
            return None
        package = name in self.packages or (found is not None and found[1])
        spec = importlib.machinery.ModuleSpec(
            f"{self.root}.{name}",
            self,
            origin=None if found is None else found[0],
            is_package=package,
        )
        spec.has_location = found is not None
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        name = module.__name__[len(self.root) + 1 :]
        self.loaded[name] = module
        module.__dict__["__builtins__"] = self.builtins
        found = self.modules.get(name)
        if found is not None:
            exec(self.codes[found[0]], module.__dict__)

    def import_(
        self,
        name: str,
        globals: Mapping[str, Any] | None = None,
        locals: Mapping[str, Any] | None = None,
        fromlist: Sequence[str] | None = (),
        level: int = 0,
    ) -> types.ModuleType:
        """`__import__` of the bundle's modules: their names mean the bundle's modules."""
        target = self._bundle_name(name, globals, level)
        if target is None:
            return builtins.__import__(name, globals, locals, fromlist, level)
        if target == "":  # `from . import helpers` in a top-level module: the bundle itself
            if not self.done:
                builtins.__import__(self.root, None, None, fromlist, 0)
            return self.package
        top = target.partition(".")[0]
        if not self.done:
            module = builtins.__import__(f"{self.root}.{target}", None, None, fromlist, 0)
            return module if fromlist else self.loaded[top]
        # After the load (a run importing inside a function): everything is in `loaded`.
        try:
            return self.loaded[target if fromlist else top]
        except KeyError:
            raise ModuleNotFoundError(f"No module named '{name}'", name=name) from None

    def _bundle_name(self, name: str, globals: Mapping[str, Any] | None, level: int) -> str | None:
        """The name within the bundle that an import means ("" the bundle's own package), or
        None for a module from outside."""
        if level == 0:
            return name if name.partition(".")[0] in self.tops else None
        package = str((globals or {}).get("__package__") or "")
        if package != self.root and not package.startswith(self.root + "."):
            return None
        base = package.split(".")[1:]
        if level - 1 > len(base):
            raise ImportError("attempted relative import beyond the top of the bundle")
        return ".".join(base[: len(base) - (level - 1)] + ([name] if name else []))


def begin_load(
    root: str, files: Mapping[str, str], codes: dict[str, types.CodeType]
) -> _BundleLoad:
    """Make the bundle's modules findable under the unique package `root` while it loads."""
    load = _BundleLoad(root, files, codes)
    with _loads_lock:
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)
        _loads[root] = load
    return load


def end_load(root: str) -> None:
    with _loads_lock:
        _loads.pop(root, None)
