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
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import itertools
import sys
import traceback
import types
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from attrs import field, frozen

from core.errors import InvalidWorkflowSource
from core.model import WorkflowRef, WorkflowVersion
from engine import bundles, inputs
from engine.bundles import decode_bundle
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
    timeout: float | None = None  # `@workflow.with_options(timeout=...)`; None: the default

    @property
    def new_workflow(self) -> NewWorkflow:
        return NewWorkflow(
            ref=self.ref,
            source=self.source,
            source_hash=self.source_hash,
            input_schema=self.input_schema,
            description=self.description,
            timeout=self.timeout,
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
        timeout=item.timeout,
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
    load = bundles.begin_load(root, files, codes)
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
        bundles.end_load(root)
        for name in [root, *(f"{root}.{name}" for name in load.loaded if name)]:
            sys.modules.pop(name, None)


def _failed_file(exc: BaseException, files: Collection[str]) -> str | None:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in files]
    return frames[-1].filename if frames else None
