"""Deadlines in the in-process runtime and the sweeper, through their public surface: a run
past its deadline fails `WorkflowTimeout`, a pause puts the running time left aside and a
resume gives it back, and the sweeper fails paused executions past their pause's deadline."""

from __future__ import annotations

import asyncio

import pytest

from core.errors import InvalidState
from core.model import Launch
from engine.deadlines import EVERY_UNFINISHED_STATE, DeadlineSweeper

SOURCE = """
import asyncio
from flux import ExecutionContext, pause, task, workflow


@task
async def nap(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "rested"


@workflow.with_options(timeout=0.3)
async def sleeper(ctx: ExecutionContext):
    return await nap(30)


@workflow
async def gate(ctx: ExecutionContext):
    answer = await pause("go", timeout=ctx.input)
    await nap(0.05)
    return answer
"""


def test_with_options_keeps_the_timeout_and_refuses_a_bad_one():
    from flux import workflow

    @workflow.with_options(timeout=2)
    async def fine(ctx):
        return None

    assert fine.timeout == 2.0
    for bad in (0, -1, float("nan"), "10", True):
        with pytest.raises(ValueError, match="timeout of workflow 'nope'"):

            @workflow.with_options(timeout=bad)
            async def nope(ctx):
                return None


async def test_registration_reads_the_timeout_into_the_catalog(engine):
    versions = await engine.register(SOURCE)
    assert versions["sleeper"].info.timeout == 0.3
    assert versions["gate"].info.timeout is None


async def test_a_run_past_its_deadline_fails_workflow_timeout(engine):
    versions = await engine.register(SOURCE)
    launch = Launch(timeout=versions["sleeper"].info.timeout)
    done = await asyncio.wait_for(engine.runtime.run(versions["sleeper"], {}, launch), 5)
    assert done.state == "FAILED" and done.error.type == "WorkflowTimeout"
    assert await engine.storage.executions.get(done.execution_id) == done


async def test_a_pause_sets_time_aside_and_a_resume_gives_it_back(engine):
    versions = await engine.register(SOURCE)
    clock = engine.runtime._clock
    paused = await engine.runtime.run(versions["gate"], 60, Launch(timeout=100))
    assert paused.state == "PAUSED"
    assert paused.time_left == pytest.approx(100, abs=2)
    assert paused.deadline == pytest.approx(clock() + 60, abs=2)
    running = await engine.runtime.resume(paused.execution_id, "ok", wait=False)
    assert running.time_left is None
    assert running.deadline == pytest.approx(clock() + paused.time_left, abs=2)
    done = await asyncio.wait_for(engine.runtime.wait(paused.execution_id), 5)
    assert (done.state, done.output) == ("COMPLETED", "ok")


async def test_the_sweeper_fails_a_pause_past_its_deadline_and_a_resume_then_is_refused(engine):
    versions = await engine.register(SOURCE)
    paused = await engine.runtime.run(versions["gate"], 0.2, Launch(timeout=100))
    assert paused.state == "PAUSED"
    sweeper = DeadlineSweeper(engine.storage.executions)
    assert await sweeper.sweep() == []  # not due yet
    await asyncio.sleep(0.3)
    [swept] = await sweeper.sweep()
    assert swept.execution_id == paused.execution_id
    stored = await engine.storage.executions.get(paused.execution_id)
    assert stored.state == "FAILED" and stored.error.type == "PauseTimeout"
    assert await sweeper.sweep(EVERY_UNFINISHED_STATE) == []  # once only
    with pytest.raises(InvalidState):
        await engine.runtime.resume(paused.execution_id, "late", wait=True)


async def test_the_periodic_sweep_starts_and_stops(engine):
    versions = await engine.register(SOURCE)
    paused = await engine.runtime.run(versions["gate"], 0.1, Launch())
    sweeper = DeadlineSweeper(engine.storage.executions, every=0.05)
    await sweeper.start()
    try:
        for _ in range(100):
            stored = await engine.storage.executions.get(paused.execution_id)
            if stored.state == "FAILED":
                break
            await asyncio.sleep(0.02)
    finally:
        await sweeper.stop()
    assert stored.state == "FAILED" and stored.error.type == "PauseTimeout"
