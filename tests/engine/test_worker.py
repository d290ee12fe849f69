"""Worker processes' engine, in one process: a Dispatcher (the server side of
`--executor workers`) and ExecutionWorkers sharing one store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from adapters.storage.memory import MemoryStorage
from core.errors import InvalidState
from core.model import (
    EventKind,
    Execution,
    ExecutionEvent,
    ExecutionState,
    WorkflowRef,
    WorkflowVersion,
)
from engine.dispatch import Dispatcher
from engine.registration import WorkflowLoader
from engine.worker import ExecutionWorker
from tests.engine import effects
from tests.engine.conftest import Engine, eventually

SOURCE = """
import asyncio

from flux import ExecutionContext, pause, task, workflow
from tests.engine import effects


@task
async def step(name: str, seconds: float) -> str:
    effects.bump("start " + name)
    await asyncio.sleep(seconds)
    effects.bump("done " + name)
    return name


@workflow
async def two_steps(ctx: ExecutionContext[dict]):
    first = await step("a", ctx.input["a"])
    second = await step("b", ctx.input["b"])
    return [first, second]


@workflow
async def ask(ctx: ExecutionContext):
    return {"answer": await pause("question", output="why?")}


@workflow
async def blocks(ctx: ExecutionContext):
    import time

    effects.moments["blocking since"] = time.monotonic()
    time.sleep(ctx.input)
    return "slept"
"""


class Cluster:
    """A store with the workflows registered, a dispatcher, and workers started on demand."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = engine.storage.executions
        self.dispatcher = Dispatcher(self.store, loader=WorkflowLoader())
        self.workers: list[ExecutionWorker] = []
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, **options) -> ExecutionWorker:
        options = {"concurrency": 4, "threads": 1, "lease": 5.0, "poll": 0.01, **options}
        worker = ExecutionWorker(self.store, load=self.engine.load, grace=0.0, **options)
        self.workers.append(worker)
        self.tasks.append(asyncio.get_running_loop().create_task(worker.run()))
        return worker

    async def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        await asyncio.wait_for(asyncio.gather(*self.tasks), 10)

    async def version(self, name: str) -> WorkflowVersion:
        return await self.engine.storage.catalog.get(WorkflowRef("default", name))


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    engine = Engine(MemoryStorage())
    await engine.register(SOURCE)
    built = Cluster(engine)
    try:
        yield built
    finally:
        try:
            await built.stop()
        finally:
            await engine.shutdown()


async def test_sync_and_async_calls_are_run_by_a_worker_and_watched(cluster):
    dispatcher = cluster.dispatcher
    cluster.start()
    wf = await cluster.version("two_steps")

    done = await asyncio.wait_for(dispatcher.run(wf, {"a": 0, "b": 0}), 10)
    assert done.state is ExecutionState.COMPLETED and done.output == ["a", "b"]

    created = await dispatcher.start(wf, {"a": 0.05, "b": 0})
    assert created.state is ExecutionState.CREATED
    seen = [item async for item in dispatcher.watch(created.execution_id)]
    assert isinstance(seen[-1], Execution) and seen[-1].state is ExecutionState.COMPLETED
    logged = [item.key for item in seen if isinstance(item, ExecutionEvent)]
    assert logged == ["step#0", "step#1"]


async def test_a_pause_is_resumed_through_the_store_and_finished_by_a_worker(cluster):
    dispatcher = cluster.dispatcher
    cluster.start()
    paused = await asyncio.wait_for(dispatcher.run(await cluster.version("ask"), None), 10)
    assert paused.state is ExecutionState.PAUSED and paused.output == "why?"

    done = await asyncio.wait_for(dispatcher.resume(paused.execution_id, 42, wait=True), 10)
    assert done.state is ExecutionState.COMPLETED and done.output == {"answer": 42}
    with pytest.raises(InvalidState):
        await dispatcher.resume(paused.execution_id, 43, wait=False)


async def test_a_taken_over_worker_writes_nothing_and_the_new_owner_skips_finished_tasks(cluster):
    dispatcher = cluster.dispatcher
    slow = cluster.start(owner="slow")
    created = await dispatcher.start(await cluster.version("two_steps"), {"a": 0, "b": 0.5})
    await eventually(lambda: effects.counts["start b"] == 1)
    assert slow.held() == [created.execution_id]

    # A worker whose clock runs a lease ahead sees the slow one's lease as expired.
    cluster.start(owner="fast", clock=lambda: time.time() + 60)
    final = await asyncio.wait_for(dispatcher.wait(created.execution_id), 10)
    assert final.state is ExecutionState.COMPLETED and final.output == ["a", "b"]
    # `a` finished before the takeover: answered from the log, not run again.
    assert effects.counts["start a"] == 1 and effects.counts["start b"] == 2

    await asyncio.sleep(0.6)  # the slow worker's `b` has finished by now: its result is refused
    await eventually(lambda: not slow.held())
    log = await cluster.store.events(created.execution_id)
    completed = [e.key for e in log if e.kind is EventKind.TASK_COMPLETED]
    assert completed == ["step#0", "step#1"]
    states = [e.value for e in log if e.kind is EventKind.STATE]
    assert states.count("COMPLETED") == 1 and states[-1] == "COMPLETED"
    assert await cluster.store.get(created.execution_id) == final


async def test_stopping_a_worker_gives_its_executions_back(cluster):
    dispatcher = cluster.dispatcher
    cluster.start(owner="first")
    created = await dispatcher.start(await cluster.version("two_steps"), {"a": 5, "b": 0})
    await eventually(lambda: effects.counts["start a"] == 1)
    await cluster.stop()
    assert (await cluster.store.get(created.execution_id)).state is (ExecutionState.RUNNING)
    claimed = await cluster.store.claim("second", limit=5, lease=5.0, now=time.time())
    assert [e.execution_id for e in claimed] == [created.execution_id]  # at once, no expiry


async def test_workflow_code_never_holds_a_worker_loop_where_leases_are_renewed(cluster):
    # A worker's loop renews its leases; an async workflow that blocks must not stall it, or
    # another worker would take over an execution that is still running.
    cluster.start()
    created = await cluster.dispatcher.start(await cluster.version("blocks"), 1.0)
    await eventually(lambda: "blocking since" in effects.moments)
    lag = time.monotonic() - effects.moments["blocking since"]
    assert lag < 0.5, f"the worker's loop was held for {lag:.2f} s"
    final = await asyncio.wait_for(cluster.dispatcher.wait(created.execution_id), 10)
    assert final.output == "slept"
