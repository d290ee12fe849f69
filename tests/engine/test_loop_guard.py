"""The loop guard drives a workflow exactly as a plain `await` would, only timing its steps."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.loop_guard import LoopGuard
from engine.registration import load_workflows

SOURCE = """
from flux import workflow

@workflow
async def sample(ctx):
    return ctx
"""

# One step of a generated coroutine: give the loop a turn, record a value, catch or raise.
steps = st.lists(
    st.one_of(
        st.just(("yield", None)),
        st.tuples(st.just("note"), st.integers()),
        st.tuples(st.just("raise"), st.text(max_size=5)),
        st.tuples(st.just("swallow"), st.text(max_size=5)),
    ),
    max_size=12,
)


def loaded():
    return load_workflows(SOURCE, "sample.py")[0]


async def scripted(plan: list[tuple[str, object]], trace: list[object]) -> list[object]:
    for kind, value in plan:
        if kind == "yield":
            await asyncio.sleep(0)
        elif kind == "note":
            trace.append(value)
        elif kind == "raise":
            raise ValueError(value)
        else:
            try:
                await asyncio.sleep(0)
                raise KeyError(value)
            except KeyError as caught:
                trace.append(("caught", str(caught)))
    return trace


async def outcome(run) -> tuple[str, object]:
    try:
        return "returned", await run
    except ValueError as exc:
        return "raised", str(exc)


@settings(max_examples=60, deadline=None)
@given(plan=steps)
def test_a_guarded_run_ends_exactly_like_a_plain_await(plan):
    async def both() -> tuple[tuple[str, object], tuple[str, object], list, list]:
        plain_trace: list[object] = []
        guarded_trace: list[object] = []
        plain = await outcome(scripted(plan, plain_trace))
        guard = LoopGuard()
        guarded = await outcome(guard.watch(loaded(), scripted(plan, guarded_trace)))
        return plain, guarded, plain_trace, guarded_trace

    plain, guarded, plain_trace, guarded_trace = asyncio.run(both())
    assert guarded == plain
    assert guarded_trace == plain_trace


async def test_a_cancel_reaches_the_workflow_which_may_answer_it():
    guard = LoopGuard()
    parked = asyncio.Event()

    async def polite():
        try:
            parked.set()
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            return "cleaned up"

    async def stubborn():
        parked.set()
        await asyncio.sleep(60)

    task = asyncio.ensure_future(guard.watch(loaded(), polite()))
    await parked.wait()
    task.cancel()
    assert await asyncio.wait_for(task, 5) == "cleaned up"

    parked.clear()
    task = asyncio.ensure_future(guard.watch(loaded(), stubborn()))
    await parked.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


async def test_slow_steps_are_strikes_and_the_last_one_moves_the_workflow():
    guard = LoopGuard(limit=0.02, strikes=2)
    workflow = loaded()

    async def holds_the_loop():
        time.sleep(0.03)
        await asyncio.sleep(0)
        return "done"

    async def quick():
        await asyncio.sleep(0)
        return "done"

    assert await guard.watch(workflow, quick()) == "done"
    assert guard.may_share_the_loop(workflow)
    assert await guard.watch(workflow, holds_the_loop()) == "done"
    assert guard.may_share_the_loop(workflow)  # one strike of two
    assert await guard.watch(workflow, holds_the_loop()) == "done"
    assert not guard.may_share_the_loop(workflow)


async def test_a_cancel_between_two_steps_is_thrown_into_the_workflow():
    # While a run only yields the loop (no future to cancel), the task throws the cancellation
    # into the coroutine at its next step: the guard must pass it on, not swallow it.
    guard = LoopGuard()
    turns = 0

    async def busy():
        nonlocal turns
        for _ in range(1000):
            turns += 1
            await asyncio.sleep(0)
        return "ran to the end"

    task = asyncio.ensure_future(guard.watch(loaded(), busy()))
    while turns < 3:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert turns < 1000
