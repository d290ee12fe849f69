"""Loading uploaded workflow modules: find every `@workflow` and describe it for the catalog.

Loading executes user code, so callers run `load_workflows` in a thread. Each load gets a fresh
module object under a unique name; it sits in `sys.modules` only while it executes (pydantic,
dataclasses and typing resolve annotations through it) and is removed afterwards, so two
versions of one file never share module state.

A bundle (several modules registered together, which import each other by name) is stored as
one text, `encode_bundle`'s JSON; `load_workflows` recognises it. Its modules load as
submodules of a fresh package with a unique name, found by one `sys.meta_path` finder that
answers only for the packages of the loads under way; their imports of each other's names are
redirected there by an `__import__` of their own, so nothing global is ever named `helpers`.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import itertools
import json
import sys
import threading
import traceback
import types
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from attrs import field, frozen

from core.errors import InvalidWorkflowSource
from core.model import WorkflowRef, WorkflowVersion
from engine import inputs
from flux.task import Task
from flux.workflow import Workflow
from ports.catalog import NewWorkflow, WorkflowVersions

_module_ids = itertools.count(1)


@frozen
class LoadedWorkflow:
    """One workflow found in a module, ready to register and to run."""

    ref: WorkflowRef
    function: Callable[..., Any]
    input_type: Any  # None: the raw JSON body
    input_schema: dict | None
    description: str
    source: str
    source_hash: str
    module: types.ModuleType = field(eq=False, repr=False)

    @property
    def new_workflow(self) -> NewWorkflow:
        return NewWorkflow(
            ref=self.ref,
            source=self.source,
            source_hash=self.source_hash,
            input_schema=self.input_schema,
            description=self.description,
        )


def source_hash(source: str, ref: WorkflowRef) -> str:
    """Changes whenever anything in the file changes, so each of its workflows gets a version."""
    return hashlib.sha256(f"{ref}\n{source}".encode()).hexdigest()


def load_workflows(source: str, filename: str = "<workflow>") -> list[LoadedWorkflow]:
    """Execute `source` as a fresh module and describe each workflow in it, sorted by ref.

    `source` may be a bundle's text (`encode_bundle`): then every module of the bundle is
    executed, and the workflows of all of them are described.

    Raises InvalidWorkflowSource when the module does not compile or import, holds no workflow,
    or defines two workflows with the same ref.
    """
    files = decode_bundle(source)
    if files is not None:
        return _load_bundle(source, files)
    try:
        code = compile(source, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise InvalidWorkflowSource(
            f"line {exc.lineno}: {exc.msg}", filename=filename, line=exc.lineno
        ) from None
    except ValueError as exc:  # e.g. NUL bytes
        raise InvalidWorkflowSource(str(exc), filename=filename) from None
    name = f"_flux_workflows_{next(_module_ids)}"
    module = types.ModuleType(name)
    module.__file__ = filename
    sys.modules[name] = module
    try:
        try:
            exec(code, module.__dict__)
        except (Exception, SystemExit) as exc:
            raise InvalidWorkflowSource(_import_failure(exc, filename), filename=filename) from None
        found = _workflows_of([(module, filename)], filename)
        _prepare_tasks(module)
        return [_describe(item, module, source) for item, module in found]
    finally:
        sys.modules.pop(name, None)


def _import_failure(exc: BaseException, filename: str, bundle: Collection[str] = ()) -> str:
    """The reason of a failed import, with the line of the (bundle) file where it happened."""
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if frame.filename == filename or frame.filename in bundle
    ]
    if not frames:
        return reason
    where = f"{frames[-1].filename}, " if bundle else ""
    return f"{where}line {frames[-1].lineno}: {reason}"


def _workflows_of(
    modules: Sequence[tuple[types.ModuleType, str]], what: str
) -> list[tuple[Workflow, types.ModuleType]]:
    """The workflows each (module, its file name) defines, sorted by ref; `what` names them all."""
    # Only workflows defined here: one imported from another module is not this file's to register.
    by_ref: dict[WorkflowRef, tuple[Workflow, types.ModuleType]] = {}
    for module, filename in modules:
        found: dict[int, Workflow] = {}
        for value in vars(module).values():
            if isinstance(value, Workflow) and value.function.__module__ == module.__name__:
                found[id(value)] = value
        for item in found.values():
            if item.ref in by_ref:
                raise InvalidWorkflowSource(
                    f"{what} defines workflow '{item.ref}' twice",
                    filename=filename,
                    ref=str(item.ref),
                )
            by_ref[item.ref] = (item, module)
    if not by_ref:
        raise InvalidWorkflowSource(
            f"{what} defines no workflow: decorate an async function with @workflow",
            filename=what,
        )
    return [by_ref[ref] for ref in sorted(by_ref)]


def _prepare_tasks(module: types.ModuleType) -> None:
    # Return types resolve through the module's namespace, which is reachable only now.
    for value in vars(module).values():
        if isinstance(value, Task) and value.function.__module__ == module.__name__:
            task_return_type(value)


def task_return_type(task: Task) -> Any:
    """A task's declared return type (used to rebuild logged results on replay), memoised."""
    try:
        return task.__dict__["_flux_return_type"]
    except KeyError:
        found = inputs.return_type(task.function)
        task.__dict__["_flux_return_type"] = found
        return found


def _describe(item: Workflow, module: types.ModuleType, source: str) -> LoadedWorkflow:
    try:
        tp = inputs.input_type(item.function)
        schema = inputs.input_schema(tp)
    except Exception as exc:
        raise InvalidWorkflowSource(
            f"workflow '{item.ref}': cannot build a schema for its input type: {exc}",
            ref=str(item.ref),
        ) from None
    return LoadedWorkflow(
        ref=item.ref,
        function=item.function,
        input_type=tp,
        input_schema=schema,
        description=item.description,
        source=source,
        source_hash=source_hash(source, item.ref),
        module=module,
    )


class WorkflowLoader:
    """Loaded workflows cached by (ref, version, source hash); user code loads in a thread, once
    per key however many callers ask at the same time. With a catalog it also loads a stored
    version by (ref, version), for runs where only the execution is known (resume, recovery)."""

    def __init__(self, catalog: WorkflowVersions | None = None, max_entries: int = 256) -> None:
        self._catalog = catalog
        self._max = max_entries
        self._cache: OrderedDict[tuple[WorkflowRef, int, str], LoadedWorkflow] = OrderedDict()
        self._loading: dict[tuple[WorkflowRef, int, str], asyncio.Future[LoadedWorkflow]] = {}

    def cached(self, version: WorkflowVersion) -> LoadedWorkflow | None:
        key = (version.info.ref, version.info.version, version.source_hash)
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
        return found

    async def stored(self, ref: WorkflowRef, version: int) -> LoadedWorkflow | None:
        """The loaded workflow of a stored version; None when that version is gone."""
        if self._catalog is None:
            raise RuntimeError("this loader has no catalog to load stored versions from")
        found = await self._catalog.get(ref, version)
        return None if found is None else await self.load(found)

    async def load(self, version: WorkflowVersion) -> LoadedWorkflow:
        found = self.cached(version)
        if found is not None:
            return found
        key = (version.info.ref, version.info.version, version.source_hash)
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[LoadedWorkflow] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            loaded = await asyncio.to_thread(_load_one, version)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # retrieved: no warning when nobody else was waiting
            raise
        else:
            future.set_result(loaded)
            self._cache[key] = loaded
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
            return loaded
        finally:
            self._loading.pop(key, None)


def _load_one(version: WorkflowVersion) -> LoadedWorkflow:
    ref = version.info.ref
    filename = f"<{ref} v{version.info.version}>"
    for loaded in load_workflows(version.source, filename):
        if loaded.ref == ref:
            return loaded
    raise InvalidWorkflowSource(
        f"the stored source of '{ref}' v{version.info.version} no longer defines it", ref=str(ref)
    )


# -- bundles: several modules registered together -----------------------------------------------

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


def _load_bundle(source: str, files: Mapping[str, str]) -> list[LoadedWorkflow]:
    names = ", ".join(sorted(files))
    what = f"the bundle ({names})" if len(files) <= 5 else f"the bundle of {len(files)} files"
    codes: dict[str, types.CodeType] = {}
    for filename, text in files.items():
        try:
            codes[filename] = compile(text, filename, "exec", dont_inherit=True)
        except SyntaxError as exc:
            raise InvalidWorkflowSource(
                f"{filename}, line {exc.lineno}: {exc.msg}", filename=filename, line=exc.lineno
            ) from None
        except ValueError as exc:  # e.g. NUL bytes
            raise InvalidWorkflowSource(f"{filename}: {exc}", filename=filename) from None
    root = f"_flux_workflows_{next(_module_ids)}"
    load = _BundleLoad(root, files, codes)
    with _loads_lock:
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)
        _loads[root] = load
    sys.modules[root] = load.package
    try:
        modules: list[tuple[types.ModuleType, str]] = []
        # A top-level __init__.py first, as an import of the package would run it.
        for name, (filename, _) in sorted(
            load.modules.items(), key=lambda item: (item[0] != "", item[1][0])
        ):
            try:
                if name:
                    modules.append((importlib.import_module(f"{root}.{name}"), filename))
                else:
                    load.exec_module(load.package)
                    modules.append((load.package, filename))
            except (Exception, SystemExit) as exc:
                failed = _failed_file(exc, files) or filename
                raise InvalidWorkflowSource(
                    _import_failure(exc, filename, files), filename=failed
                ) from None
        load.done = True
        found = _workflows_of(modules, what)
        for module, _ in modules:
            _prepare_tasks(module)
        return [_describe(item, module, source) for item, module in found]
    finally:
        with _loads_lock:
            _loads.pop(root, None)
        for name in [root, *(f"{root}.{name}" for name in load.loaded if name)]:
            sys.modules.pop(name, None)


def _failed_file(exc: BaseException, files: Collection[str]) -> str | None:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in files]
    return frames[-1].filename if frames else None
