"""Worker processes' engine, in one process: a Dispatcher (the server side of
`--executor workers`) and ExecutionWorkers sharing one store."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from adapters.storage.memory import MemoryStorage
from core.errors import InvalidState
from core.model import (
    EventKind,
    ExecutionEvent,
    ExecutionState,
    WorkflowRef,
    WorkflowVersion,
)
from core.stream import StateChange
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
        self.signals = engine.storage.signals
        self.dispatcher = self.dispatch()
        self.workers: list[ExecutionWorker] = []
        self.tasks: list[asyncio.Task[None]] = []

    def dispatch(self, signals=None, **options) -> Dispatcher:
        """A dispatcher on the cluster's store (another server replica, as it were)."""
        signals = self.signals if signals is None else signals
        return Dispatcher(self.store, signals, loader=WorkflowLoader(), **options)

    def start(self, signals=None, **options) -> ExecutionWorker:
        options = {"concurrency": 4, "threads": 1, "lease": 5.0, "poll": 0.01, **options}
        signals = self.signals if signals is None else signals
        worker = ExecutionWorker(
            self.store, self.store, signals, loader=self.engine.loader, grace=0.0, **options
        )
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
    assert isinstance(seen[-1], StateChange)
    assert seen[-1].execution.state is ExecutionState.COMPLETED
    logged = [item.key for item in seen if isinstance(item, ExecutionEvent)]
    assert logged == ["step#0", "step#1"]
    # The state it was created in first (seq 0), then the log in its order.
    assert seen[0] == StateChange(seen[0].execution, 0)
    assert seen[0].execution.state is ExecutionState.CREATED
    seqs = [item.seq for item in seen]
    assert seqs == sorted(set(seqs))


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


# Wake-ups: signals from the store, polling as the safety net.

LONG = 30.0  # seconds: a poll interval no test here may wait for


async def test_signals_wake_an_idle_worker_and_the_waiting_dispatcher(cluster):
    # Neither side polls within the test's bound (a long lease also keeps the heartbeat from
    # waking the worker), so only the store's signals can make the call finish in time.
    cluster.start(poll=LONG, lease=10 * LONG)
    dispatcher = cluster.dispatch(first_poll=LONG, max_poll=LONG)
    wf = await cluster.version("two_steps")
    await asyncio.sleep(0.05)  # the worker has claimed nothing and is waiting

    started = time.monotonic()
    done = await asyncio.wait_for(dispatcher.run(wf, {"a": 0.01, "b": 0}), 2 * LONG)
    assert done.state is ExecutionState.COMPLETED and done.output == ["a", "b"]
    assert time.monotonic() - started < 5

    seen = []
    async with contextlib.aclosing(dispatcher.watch(done.execution_id)) as items:
        seen = await asyncio.wait_for(_all(items), 5)
    assert isinstance(seen[-1], StateChange) and seen[-1].execution == done


async def test_a_resume_wakes_an_idle_worker(cluster):
    cluster.start(poll=LONG, lease=10 * LONG)
    dispatcher = cluster.dispatch(first_poll=LONG, max_poll=LONG)
    paused = await asyncio.wait_for(dispatcher.run(await cluster.version("ask"), None), 5)
    assert paused.state is ExecutionState.PAUSED

    done = await asyncio.wait_for(dispatcher.resume(paused.execution_id, 7, wait=True), 5)
    assert done.output == {"answer": 7}


async def test_without_signals_polling_still_finishes_every_call(cluster):
    cluster.start(signals=Silent(), poll=0.05)
    dispatcher = cluster.dispatch(signals=Silent(), max_poll=0.05)
    wf = await cluster.version("two_steps")
    done = await asyncio.wait_for(dispatcher.run(wf, {"a": 0, "b": 0}), 10)
    assert done.state is ExecutionState.COMPLETED
    paused = await asyncio.wait_for(dispatcher.run(await cluster.version("ask"), None), 10)
    resumed = await asyncio.wait_for(dispatcher.resume(paused.execution_id, 1, wait=True), 10)
    assert resumed.output == {"answer": 1}


class Silent:
    """Signals that never come, as when notifications are lost or the store has none."""

    async def listen(self, execution_id: str | None) -> Silent:
        return self

    async def wait(self, timeout: float) -> bool:
        await asyncio.sleep(timeout)
        return False

    def close(self) -> None:
        return None


async def _all(items):
    return [item async for item in items]
