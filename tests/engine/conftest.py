from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from adapters.storage.memory import MemoryStorage
from adapters.storage.sqlite import SqliteStorage
from core.model import Execution, ExecutionState, WorkflowVersion
from engine.registration import WorkflowLoader, load_workflows
from engine.runtime import Runtime
from tests.engine import effects

ALL_STATES = list(ExecutionState)


class Engine:
    """A storage, a loader and a runtime wired the way the server wires them."""

    def __init__(self, storage: Any, **options: Any) -> None:
        self.storage = storage
        self.loader = WorkflowLoader(storage.catalog)
        self.runtime = Runtime(storage.executions, loader=self.loader, **options)
        self.closed = False

    async def register(self, source: str, filename: str = "wf.py") -> dict[str, WorkflowVersion]:
        source = textwrap.dedent(source)
        loaded = await asyncio.to_thread(load_workflows, source, filename)
        await self.storage.catalog.register([item.new_workflow for item in loaded])
        versions = {}
        for item in loaded:
            versions[item.ref.name] = await self.storage.catalog.get(item.ref)
        return versions

    async def shutdown(self) -> None:
        if not self.closed:
            self.closed = True
            await self.runtime.close()
            await self.storage.close()

    async def stored(self) -> list[Execution]:
        return await self.storage.executions.in_states(ALL_STATES)


@pytest.fixture(autouse=True)
def _fresh_effects() -> None:
    effects.reset()


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    built = Engine(MemoryStorage())
    try:
        yield built
    finally:
        await built.shutdown()


@pytest.fixture
async def sqlite_engines(tmp_path) -> AsyncIterator[Callable[..., Any]]:
    """Opens engines on one SQLite file, as successive server processes would."""
    opened: list[Engine] = []

    async def open_engine(**options: Any) -> Engine:
        built = Engine(await SqliteStorage.open(tmp_path / "flux.db"), **options)
        opened.append(built)
        return built

    try:
        yield open_engine
    finally:
        for built in opened:
            await built.shutdown()


async def eventually(check: Callable[[], Any], timeout: float = 5.0) -> None:
    """Wait (bounded) until `check()` is truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
