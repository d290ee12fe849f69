"""A runtime that stops mid-run (shutdown or crash) and a new one on the same SQLite file."""

from __future__ import annotations

import asyncio

from core.model import EventKind, ExecutionState
from tests.engine import effects
from tests.engine.conftest import eventually

RECOVERABLE = """
import asyncio
from flux import task, workflow
from flux.tasks import pause
from tests.engine import effects


@task
async def charge(amount):
    effects.bump("charge")
    return amount * 2


@task
async def gate():
    effects.bump("gate")
    if effects.flags.get("block"):
        await asyncio.sleep(60)
    return "open"


@workflow
async def recoverable(ctx):
    charged = await charge(ctx.input)
    opened = await gate()
    return {"charged": charged, "gate": opened}


@workflow
async def waiting(ctx):
    return await pause("approval")
"""


async def test_a_run_left_running_is_finished_by_the_next_runtime(sqlite_engines):
    effects.flags["block"] = True
    first = await sqlite_engines()
    versions = await first.register(RECOVERABLE)
    started = await first.runtime.start(versions["recoverable"], 21)
    paused = await first.runtime.run(versions["waiting"], None)
    await eventually(lambda: effects.counts["gate"] == 1)
    await first.shutdown()  # the gate task never finished

    effects.flags["block"] = False
    second = await sqlite_engines()
    stored = await second.storage.executions.get(started.execution_id)
    assert stored.state is ExecutionState.RUNNING
    assert await second.runtime.recover() == [started.execution_id]
    done = await asyncio.wait_for(second.runtime.wait(started.execution_id), 10)
    assert done.state is ExecutionState.COMPLETED
    assert done.output == {"charged": 42, "gate": "open"}
    # charge finished before the stop: answered from the log. gate did not: it ran again.
    assert (effects.counts["charge"], effects.counts["gate"]) == (1, 2)
    log = await second.storage.executions.events(started.execution_id)
    completed = [e.key for e in log if e.kind is EventKind.TASK_COMPLETED]
    assert completed == ["charge#0", "gate#0"]

    # The paused one stayed paused through the restart and is still resumable.
    assert (await second.runtime.get(paused.execution_id)).state is ExecutionState.PAUSED
    resumed = await second.runtime.resume(paused.execution_id, "late yes", wait=True)
    assert resumed.output == "late yes"


async def test_a_created_execution_is_run_on_recovery(sqlite_engines):
    first = await sqlite_engines()
    versions = await first.register(RECOVERABLE)
    # Written as CREATED by a process that died before running it.
    from core.model import Execution

    orphan = Execution("orphan-1", versions["recoverable"].info.ref, 1, ExecutionState.CREATED, 1)
    await first.storage.executions.create(orphan)
    await first.shutdown()

    second = await sqlite_engines()
    assert await second.runtime.recover() == ["orphan-1"]
    done = await asyncio.wait_for(second.runtime.wait("orphan-1"), 10)
    assert done.output == {"charged": 2, "gate": "open"}


async def test_a_run_whose_version_is_gone_fails_with_the_reason(sqlite_engines):
    effects.flags["block"] = True
    first = await sqlite_engines()
    versions = await first.register(RECOVERABLE)
    started = await first.runtime.start(versions["recoverable"], 1)
    await eventually(lambda: effects.counts["gate"] == 1)
    await first.shutdown()

    second = await sqlite_engines()
    assert await second.storage.catalog.delete(versions["recoverable"].info.ref) == 1
    await second.runtime.recover()
    failed = await second.storage.executions.get(started.execution_id)
    assert failed.state is ExecutionState.FAILED
    assert failed.error.type == "WorkflowNotFound"
    assert "recoverable" in failed.error.message and "no longer registered" in failed.error.message
