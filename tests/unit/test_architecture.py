"""Dependency rules of ARCHITECTURE.md, checked on the source with `ast`.

core/ is pure (core, pure stdlib, attrs, cattrs, jsonschema); ports/ sees only core and typing helpers;
engine/ never reaches adapters; the SDK (flux/) may use anything but adapters.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CORE_ALLOWED = frozenset(
    {
        "__future__",
        "core",
        "attrs",
        "attr",
        "cattrs",
        # Validation only: deterministic, and it fetches nothing unless handed a retriever.
        "jsonschema",
        # pure stdlib: no I/O, no clock, no randomness
        "abc",
        "base64",
        "bisect",
        "collections",
        "copy",
        "dataclasses",
        "enum",
        "functools",
        "graphlib",
        "hashlib",
        "heapq",
        "ipaddress",
        "itertools",
        "json",
        "keyword",
        "math",
        "numbers",
        "operator",
        "re",
        "string",
        "textwrap",
        "types",
        "typing",
        "unicodedata",
        "urllib.parse",
    }
)
# Named outright so the failure message says why, even if someone widens the allow-list.
CORE_FORBIDDEN = frozenset(
    {
        "os",
        "sys",
        "time",
        "random",
        "asyncio",
        "socket",
        "subprocess",
        "threading",
        "multiprocessing",
        "datetime",
        "uuid",
        "secrets",
        "pathlib",
        "io",
        "importlib",
        "aiohttp",
        "sqlite3",
        "click",
        "mcp",
        "engine",
        "adapters",
        "ports",
        "flux",
    }
)
# Builtins that do I/O or run code the core has no business running.
CORE_FORBIDDEN_CALLS = frozenset({"open", "print", "input", "eval", "exec", "__import__"})
PORTS_ALLOWED = frozenset(
    # flux: the SDK's own types (a Task), which the replay port names for the type checker only
    {"__future__", "core", "ports", "flux", "typing", "attrs", "attr", "collections.abc"}
)
# What drives executions directly. Front ends go through the use cases of engine/calls.py and
# engine/app.py; only the composition root builds these.
EXECUTION_MACHINERY = frozenset(
    {
        "engine.runtime",
        "engine.dispatch",
        "engine.replay",
        "engine.loop_threads",
        "engine.loop_guard",
        "engine.claims",
    }
)
# The composition roots: the server's graph, the standalone process's and the worker processes'.
COMPOSITION_ROOTS = (
    ROOT / "adapters" / "bootstrap.py",
    ROOT / "adapters" / "standalone_process.py",
    ROOT / "adapters" / "worker_process.py",
)


def imported_modules(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    """Absolute dotted names of every import in `tree` (relative ones resolved in `package`)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                targets = [node.module] if node.module else [alias.name for alias in node.names]
                found.extend((node.lineno, ".".join([*base, target])) for target in targets)
            else:
                found.append((node.lineno, node.module or ""))
    return found


def _covered(module: str, names: frozenset[str]) -> bool:
    parts = module.split(".")
    return any(".".join(parts[:i]) in names for i in range(1, len(parts) + 1))


def core_violations(source: str, package: str = "core") -> list[str]:
    tree = ast.parse(source)
    problems = []
    for line, module in imported_modules(tree, package):
        if _covered(module, CORE_FORBIDDEN) or not _covered(module, CORE_ALLOWED):
            problems.append(f"line {line}: imports {module}")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in CORE_FORBIDDEN_CALLS
        ):
            problems.append(f"line {node.lineno}: calls {node.func.id}()")
    return problems


def import_violations(source: str, package: str, allowed=None, forbidden=frozenset()) -> list[str]:
    problems = []
    for line, module in imported_modules(ast.parse(source), package):
        if _covered(module, forbidden) or (allowed is not None and not _covered(module, allowed)):
            problems.append(f"line {line}: imports {module}")
    return problems


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _ids(paths: list[Path]) -> list[str]:
    return [str(path.relative_to(ROOT)) for path in paths]


def _package_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])


@pytest.mark.parametrize("path", sources("core"), ids=_ids(sources("core")))
def test_core_is_pure(path: Path) -> None:
    assert core_violations(path.read_text(), _package_of(path)) == []


@pytest.mark.parametrize("path", sources("ports"), ids=_ids(sources("ports")))
def test_ports_depend_only_on_core(path: Path) -> None:
    assert import_violations(path.read_text(), _package_of(path), allowed=PORTS_ALLOWED) == []


@pytest.mark.parametrize("path", sources("engine"), ids=_ids(sources("engine")))
def test_engine_never_imports_adapters(path: Path) -> None:
    found = import_violations(
        path.read_text(), _package_of(path), forbidden=frozenset({"adapters"})
    )
    assert found == []


@pytest.mark.parametrize("path", sources("flux"), ids=_ids(sources("flux")))
def test_sdk_never_imports_adapters(path: Path) -> None:
    found = import_violations(
        path.read_text(), _package_of(path), forbidden=frozenset({"adapters"})
    )
    assert found == []


def protocols_defined(source: str) -> list[str]:
    """Names of the `typing.Protocol` classes a module defines."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
                if name == "Protocol":
                    found.append(node.name)
    return found


OUTSIDE_PORTS = [p for package in ("core", "engine", "flux", "adapters") for p in sources(package)]


@pytest.mark.parametrize("path", OUTSIDE_PORTS, ids=_ids(OUTSIDE_PORTS))
def test_protocols_live_only_in_ports(path: Path) -> None:
    assert protocols_defined(path.read_text()) == []


FRONT_ENDS = [p for p in sources("adapters") if p not in COMPOSITION_ROOTS]


@pytest.mark.parametrize("path", FRONT_ENDS, ids=_ids(FRONT_ENDS))
def test_nothing_outside_the_engine_drives_executions(path: Path) -> None:
    source = path.read_text()
    assert import_violations(source, _package_of(path), forbidden=EXECUTION_MACHINERY) == []
    runtime_uses = [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute) and node.attr in {"runtime", "executor"}
    ]
    assert runtime_uses == [], f"reaches for a runtime at lines {runtime_uses}"


def test_the_layers_exist() -> None:
    # Guards the checks above against passing vacuously after a move or rename.
    assert len(sources("core")) >= 5
    assert len(sources("ports")) >= 1
    assert all(root.exists() for root in COMPOSITION_ROOTS) and len(FRONT_ENDS) >= 10


def test_checker_finds_protocols() -> None:
    assert protocols_defined("class P(Protocol):\n    x: int") == ["P"]
    assert protocols_defined("class P(typing.Protocol):\n    x: int") == ["P"]
    assert protocols_defined("class C(Base):\n    x: int") == []


# The checker itself, so a bug in it cannot make every rule pass.


@pytest.mark.parametrize(
    "source",
    [
        "import os",
        "import time",
        "from random import choice",
        "import asyncio.tasks",
        "from aiohttp import web",
        "import engine.runtime",
        "from ports.storage import Catalog",
        "from adapters.http import app",
        "from flux import workflow",
        "import urllib.request",
        "import requests",
        "def f():\n    return open('x')",
        "import datetime",
    ],
)
def test_checker_flags_impure_core_code(source: str) -> None:
    assert core_violations(source, "core") != []


@pytest.mark.parametrize(
    "source",
    [
        "from __future__ import annotations",
        "from attrs import frozen, evolve",
        "import cattrs",
        "from collections.abc import Mapping",
        "from core.model import WorkflowRef",
        "from . import names",
        "from .errors import InvalidName",
        "from urllib.parse import quote",
        "import re, json, hashlib",
    ],
)
def test_checker_accepts_pure_core_code(source: str) -> None:
    assert core_violations(source, "core") == []


def test_checker_resolves_relative_imports() -> None:
    assert imported_modules(ast.parse("from .. import runtime"), "engine.sub") == [
        (1, "engine.runtime")
    ]
    assert imported_modules(ast.parse("from .model import X"), "core") == [(1, "core.model")]
    assert import_violations("import adapters.http", "engine", forbidden={"adapters"})
    assert not import_violations("from . import runtime", "engine", forbidden={"adapters"})
    assert import_violations("import aiohttp", "ports", allowed=PORTS_ALLOWED)
    assert not import_violations("from typing import Protocol", "ports", allowed=PORTS_ALLOWED)
