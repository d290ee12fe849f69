"""The worker pool's settling races, with real worker processes: a cancel that reads an
execution RUNNING while its worker's final save is on its way must not overwrite that save,
and every answer (the cancel's, the waiting caller's, the store's) must agree on one outcome."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Sequence
from typing import Any

import pytest

from adapters.bootstrap import worker_command
from adapters.storage.memory import MemoryStorage
from core.errors import InvalidState
from core.model import Execution, ExecutionEvent, ExecutionState
from engine.pool import LocalPool
from engine.registration import load_workflows

SOURCE = """
from flux import ExecutionContext, workflow

@workflow.with_options(namespace="race")
async def quick(ctx: ExecutionContext):
    return "done"
"""
BOUND = 30.0  # seconds no step here may take


class HeldCompletion:
    """The store, except that a COMPLETED save waits until a cancel has read the log: then it
    lands, before the cancel writes. The order the race needs, made certain."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.arrived = asyncio.Event()
        self._release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def _hold(self, execution: Execution) -> None:
        if execution.state is ExecutionState.COMPLETED:
            self.arrived.set()
            await asyncio.wait_for(self._release.wait(), BOUND)

    async def save(self, execution: Execution, events: Sequence[ExecutionEvent] = ()) -> None:
        await self._hold(execution)
        await self._store.save(execution, events)

    async def save_if(
        self,
        execution: Execution,
        events: Sequence[ExecutionEvent],
        expected: Sequence[ExecutionState],
    ) -> bool:
        await self._hold(execution)
        return await self._store.save_if(execution, events, expected)

    async def events(self, execution_id: str) -> list[ExecutionEvent]:
        found = await self._store.events(execution_id)
        if self.arrived.is_set() and not self._release.is_set():
            self._release.set()  # the cancel has read the log: let the completion land
            for _ in range(20):
                await asyncio.sleep(0.005)
        return found


@pytest.fixture
async def pool_and_store():
    storage = MemoryStorage()
    source = textwrap.dedent(SOURCE)
    [loaded] = await asyncio.to_thread(load_workflows, source, "race.py")
    await storage.catalog.register([loaded.new_workflow])
    version = await storage.catalog.get(loaded.ref)
    store = HeldCompletion(storage.executions)
    pool = LocalPool(store, storage.catalog, worker_command, workers=1)  # type: ignore[arg-type]
    await pool.open()
    try:
        yield pool, store, version
    finally:
        await pool.close()
        await storage.close()


async def test_a_cancel_racing_the_final_save_answers_what_is_stored(pool_and_store):
    pool, store, version = pool_and_store
    caller = asyncio.ensure_future(pool.run(version, {}))
    await asyncio.wait_for(store.arrived.wait(), BOUND)  # the worker's COMPLETED save is on its way
    [running] = await store.in_states([ExecutionState.RUNNING])
    try:
        answer: Any = await asyncio.wait_for(pool.cancel(running.execution_id), BOUND)
    except InvalidState as refused:
        answer = refused
    waited = await asyncio.wait_for(caller, BOUND)
    stored = await store.get(running.execution_id)

    # The completion landed first: it stands, and the cancel is refused with that state.
    assert stored.state is ExecutionState.COMPLETED, stored
    assert isinstance(answer, InvalidState), answer
    assert answer.details["state"] == "COMPLETED"
    assert waited.state is ExecutionState.COMPLETED
    log = await store.events(running.execution_id)
    assert [e.value for e in log if e.kind.value == "state"] == ["COMPLETED"]
