"""The runtime through its public surface: run, start, resume, watch, cancel, failures."""

from __future__ import annotations

import asyncio

import pytest

from core.errors import ExecutionNotFound, InputValidationError, InvalidState
from core.model import EventKind, ExecutionEvent, ExecutionState
from core.stream import StateChange
from tests.engine import effects

TYPED = """
import dataclasses
from pydantic import BaseModel
from flux import ExecutionContext, task, workflow


class Order(BaseModel):
    customer_id: str
    amount: float


@dataclasses.dataclass
class Point:
    x: int
    y: int


@task
async def price(amount: float) -> float:
    return round(amount * 1.2, 2)


@workflow.with_options(namespace="shop")
async def invoice(ctx: ExecutionContext[Order]):
    total = await price(ctx.input.amount)
    return {"invoice_id": f"INV-{ctx.execution_id[:6]}", "total": total,
            "customer": ctx.input.customer_id, "ref": f"{ctx.namespace}/{ctx.workflow}",
            "version": ctx.version}


@workflow
async def norm(ctx: ExecutionContext[Point]):
    return {"point": ctx.input, "type": type(ctx.input).__name__}


@workflow
async def raw(ctx):
    return {"got": ctx.input}
"""

APPROVAL = """
from flux import ExecutionContext, task, workflow
from flux.tasks import pause
from tests.engine import effects


@task
async def charge(amount):
    effects.bump("charge")
    return amount * 2


@task
async def ship(order):
    effects.bump("ship")
    return f"shipped {order}"


@workflow
async def approve(ctx):
    charged = await charge(ctx.input["amount"])
    decision = await pause("approval", output={"charged": charged})
    if not decision.get("ok"):
        return {"charged": charged, "approved": False}
    shipped = await ship(ctx.input["order"])
    signed = await pause("signature")
    return {"charged": charged, "approved": True, "shipped": shipped, "signed": signed}
"""


async def test_typed_input_is_converted_and_the_output_returned(engine):
    versions = await engine.register(TYPED)
    done = await engine.runtime.run(versions["invoice"], {"customer_id": "c1", "amount": "10"})
    assert done.state is ExecutionState.COMPLETED
    assert done.output == {
        "invoice_id": f"INV-{done.execution_id[:6]}",
        "total": 12.0,
        "customer": "c1",
        "ref": "shop/invoice",
        "version": 1,
    }
    assert done.input == {"customer_id": "c1", "amount": "10"}  # the body as sent
    log = await engine.storage.executions.events(done.execution_id)
    assert [(e.kind, e.key, e.value) for e in log if e.kind is EventKind.TASK_COMPLETED] == [
        (EventKind.TASK_COMPLETED, "price#0", 12.0)
    ]
    assert await engine.runtime.get(done.execution_id) == done


async def test_dataclass_input_and_output(engine):
    versions = await engine.register(TYPED)
    done = await engine.runtime.run(versions["norm"], {"x": 1, "y": "2"})
    assert done.output == {"point": {"x": 1, "y": 2}, "type": "Point"}


async def test_untyped_input_is_the_raw_json(engine):
    versions = await engine.register(TYPED)
    for body in ({"a": [1, 2]}, [1, "x"], "text", None):
        assert (await engine.runtime.run(versions["raw"], body)).output == {"got": body}


@pytest.mark.parametrize("mode", ["run", "start"])
async def test_invalid_input_is_refused_before_anything_is_stored(engine, mode):
    versions = await engine.register(TYPED)
    with pytest.raises(InputValidationError) as caught:
        await getattr(engine.runtime, mode)(versions["invoice"], {"amount": "lots"})
    assert {tuple(e["loc"]) for e in caught.value.details["errors"]} == {
        ("customer_id",),
        ("amount",),
    }
    assert await engine.stored() == []


async def test_a_pause_stops_the_run_and_a_resume_replays_without_rerunning_tasks(engine):
    versions = await engine.register(APPROVAL)
    paused = await engine.runtime.run(versions["approve"], {"amount": 5, "order": "o-1"})
    assert paused.state is ExecutionState.PAUSED
    assert (paused.pause_name, paused.output) == ("approval", {"charged": 10})
    assert effects.counts["charge"] == 1

    second = await engine.runtime.resume(paused.execution_id, {"ok": True}, wait=True)
    assert second.state is ExecutionState.PAUSED and second.pause_name == "signature"
    assert (effects.counts["charge"], effects.counts["ship"]) == (1, 1)

    done = await engine.runtime.resume(paused.execution_id, "signed-by-ada", wait=True)
    assert done.state is ExecutionState.COMPLETED
    assert done.output == {
        "charged": 10,
        "approved": True,
        "shipped": "shipped o-1",
        "signed": "signed-by-ada",
    }
    # Three replays in all, yet each task ran exactly once.
    assert (effects.counts["charge"], effects.counts["ship"]) == (1, 1)
    log = await engine.storage.executions.events(paused.execution_id)
    assert [(e.kind, e.key) for e in log if e.kind in (EventKind.PAUSED, EventKind.RESUMED)] == [
        (EventKind.PAUSED, "approval#0"),
        (EventKind.RESUMED, "approval#0"),
        (EventKind.PAUSED, "signature#0"),
        (EventKind.RESUMED, "signature#0"),
    ]
    assert [e.seq for e in log] == sorted({e.seq for e in log})


async def test_resume_without_waiting_returns_running_and_wait_gets_the_result(engine):
    versions = await engine.register(APPROVAL)
    paused = await engine.runtime.run(versions["approve"], {"amount": 1, "order": "o"})
    running = await engine.runtime.resume(paused.execution_id, {"ok": False}, wait=False)
    assert running.state is ExecutionState.RUNNING
    done = await engine.runtime.wait(paused.execution_id)
    assert done.output == {"charged": 2, "approved": False}


async def test_only_a_paused_execution_can_be_resumed(engine):
    versions = await engine.register(APPROVAL + TYPED)
    done = await engine.runtime.run(versions["raw"], 1)
    with pytest.raises(InvalidState) as caught:
        await engine.runtime.resume(done.execution_id, {}, wait=True)
    assert caught.value.details["state"] == "COMPLETED"
    with pytest.raises(ExecutionNotFound):
        await engine.runtime.resume("no-such-id", {}, wait=True)


async def test_two_concurrent_resumes_answer_one_pause_once(engine):
    versions = await engine.register(APPROVAL)
    paused = await engine.runtime.run(versions["approve"], {"amount": 1, "order": "o"})
    results = await asyncio.gather(
        engine.runtime.resume(paused.execution_id, {"ok": False}, wait=True),
        engine.runtime.resume(paused.execution_id, {"ok": False}, wait=True),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["Execution", "InvalidState"]


async def test_a_failing_workflow_fails_with_the_exception_type_and_message(engine):
    versions = await engine.register(
        """
        from flux import task, workflow

        @task
        async def check(value):
            raise ValueError(f"bad value {value}")

        @workflow
        async def failing(ctx):
            await check(ctx.input)
        """
    )
    failed = await engine.runtime.run(versions["failing"], 7)
    assert failed.state is ExecutionState.FAILED
    assert (failed.error.type, failed.error.message) == ("ValueError", "bad value 7")
    assert failed.output is None
    log = await engine.storage.executions.events(failed.execution_id)
    assert [(e.kind, e.key, e.value) for e in log if e.kind is EventKind.TASK_FAILED] == [
        (EventKind.TASK_FAILED, "check#0", {"type": "ValueError", "message": "bad value 7"})
    ]


async def test_a_workflow_returning_something_unserialisable_fails(engine):
    versions = await engine.register(
        "from flux import workflow\n\n@workflow\nasync def odd(ctx):\n    return object()\n"
    )
    failed = await engine.runtime.run(versions["odd"], None)
    assert failed.state is ExecutionState.FAILED and failed.error.type == "TypeError"


async def test_task_retries_timeouts_and_fallbacks(engine):
    versions = await engine.register(
        """
        import asyncio
        from flux import task, workflow
        from tests.engine import effects

        @task.with_options(retry_max_attempts=2, retry_delay=0.01)
        async def flaky():
            if effects.bump("flaky") < 3:
                raise ConnectionError("try again")
            return "ok"

        @task.with_options(timeout=0.05)
        async def slow():
            await asyncio.sleep(5)

        def rescue():
            return "fallback"

        @task.with_options(retry_max_attempts=1, fallback=rescue)
        def broken():
            effects.bump("broken")
            raise RuntimeError("nope")

        @workflow
        async def retried(ctx):
            return [await flaky(), await broken()]

        @workflow
        async def timed_out(ctx):
            await slow()
        """
    )
    done = await engine.runtime.run(versions["retried"], None)
    assert done.output == ["ok", "fallback"]
    assert (effects.counts["flaky"], effects.counts["broken"]) == (3, 2)
    failed = await engine.runtime.run(versions["timed_out"], None)
    assert failed.error.type == "TimeoutError"
    assert "slow" in failed.error.message


async def test_parallel_and_pipeline_keys_are_deterministic_across_replays(engine):
    versions = await engine.register(
        """
        import asyncio
        from flux import task, workflow
        from flux.tasks import parallel, pause, pipeline
        from tests.engine import effects

        @task
        async def work(n):
            effects.bump(f"work{n}")
            await asyncio.sleep(0.01 * (3 - n))  # finish in reverse order
            return n * 10

        @task
        async def add_one(x):
            return x + 1

        @workflow
        async def fan(ctx):
            results = await parallel(work(0), work(1), work(2))
            piped = await pipeline(add_one, add_one, input=results[-1])
            answer = await pause("check", output=results)
            return {"results": results, "piped": piped, "answer": answer}
        """
    )
    paused = await engine.runtime.run(versions["fan"], None)
    assert paused.output == [0, 10, 20]
    done = await engine.runtime.resume(paused.execution_id, "yes", wait=True)
    assert done.output == {"results": [0, 10, 20], "piped": 22, "answer": "yes"}
    assert [effects.counts[f"work{n}"] for n in range(3)] == [1, 1, 1]
    log = await engine.storage.executions.events(paused.execution_id)
    keys = {e.key: e.value for e in log if e.kind is EventKind.TASK_COMPLETED}
    assert keys == {"work#0": 0, "work#1": 10, "work#2": 20, "add_one#0": 21, "add_one#1": 22}


async def test_durable_sleep_does_not_sleep_again_on_replay(engine):
    versions = await engine.register(
        """
        from flux import workflow
        from flux.tasks import pause, sleep

        @workflow
        async def napper(ctx):
            await sleep(0.3)
            return await pause("after-nap")
        """
    )
    runtime = engine.runtime
    loop = asyncio.get_running_loop()
    started = loop.time()
    paused = await runtime.run(versions["napper"], None)
    assert loop.time() - started >= 0.3
    started = loop.time()
    done = await runtime.resume(paused.execution_id, "up", wait=True)
    assert done.output == "up"
    assert loop.time() - started < 0.25


async def test_watch_streams_states_and_task_events_in_order(engine):
    versions = await engine.register(APPROVAL)
    execution = await engine.runtime.start(versions["approve"], {"amount": 2, "order": "o"})
    assert execution.state is ExecutionState.CREATED
    items = [item async for item in engine.runtime.watch(execution.execution_id)]
    described = [
        item.execution.state if isinstance(item, StateChange) else (item.kind, item.key)
        for item in items
    ]
    assert described == [
        ExecutionState.CREATED,
        ExecutionState.RUNNING,
        (EventKind.TASK_STARTED, "charge#0"),
        (EventKind.TASK_COMPLETED, "charge#0"),
        (EventKind.PAUSED, "approval#0"),
        ExecutionState.PAUSED,
    ]
    # Each item has its log seq; a state's is that of its STATE entry, the creation's is 0.
    assert [item.seq for item in items] == [0, 1, 2, 3, 4, 5]
    logged = await engine.storage.executions.events(execution.execution_id)
    assert {(e.seq, e.value) for e in logged if e.kind is EventKind.STATE} == {
        (1, "RUNNING"),
        (5, "PAUSED"),
    }
    assert isinstance(items[-1], StateChange)
    assert items[-1].execution.output == {"charged": 4}

    resumed = await engine.runtime.resume(execution.execution_id, {"ok": False}, wait=False)
    items = [item async for item in engine.runtime.watch(resumed.execution_id)]
    assert isinstance(items[0], ExecutionEvent) and items[0].kind is EventKind.RESUMED
    assert items[0].seq == 6 and items[1].seq == 7
    assert isinstance(items[-1], StateChange)
    assert items[-1].execution.state is ExecutionState.COMPLETED
    assert items[-1].execution.output == {"charged": 4, "approved": False}


async def test_a_watcher_leaving_early_does_not_stop_the_execution(engine):
    versions = await engine.register(
        """
        import asyncio
        from flux import task, workflow

        @task
        async def step(n):
            await asyncio.sleep(0.02)
            return n

        @workflow
        async def steps(ctx):
            return [await step(n) for n in range(5)]
        """
    )
    execution = await engine.runtime.start(versions["steps"], None)
    async for _ in engine.runtime.watch(execution.execution_id):
        break
    done = await engine.runtime.wait(execution.execution_id)
    assert done.output == [0, 1, 2, 3, 4]


async def test_watch_of_an_unknown_execution_is_not_found(engine):
    with pytest.raises(ExecutionNotFound):
        async for _ in engine.runtime.watch("nope"):
            pass
    with pytest.raises(ExecutionNotFound):
        await engine.runtime.get("nope")


async def test_cancel_a_running_and_a_paused_execution(engine):
    versions = await engine.register(
        APPROVAL
        + """

import asyncio

@workflow
async def forever(ctx):
    await asyncio.sleep(60)
"""
    )
    running = await engine.runtime.start(versions["forever"], None)
    async for item in engine.runtime.watch(running.execution_id):
        if isinstance(item, StateChange) and item.execution.state is ExecutionState.RUNNING:
            break
    cancelled = await asyncio.wait_for(engine.runtime.cancel(running.execution_id), 5)
    assert cancelled.state is ExecutionState.CANCELLED
    assert (await engine.storage.executions.get(running.execution_id)).state == "CANCELLED"

    paused = await engine.runtime.run(versions["approve"], {"amount": 1, "order": "o"})
    cancelled = await engine.runtime.cancel(paused.execution_id)
    assert cancelled.state is ExecutionState.CANCELLED
    with pytest.raises(InvalidState):
        await engine.runtime.resume(paused.execution_id, {}, wait=True)
    # Cancelling it again answers the same; a completed execution cannot be cancelled.
    again = await engine.runtime.cancel(paused.execution_id)
    assert again.state is ExecutionState.CANCELLED and again.execution_id == paused.execution_id
    other = await engine.runtime.run(versions["approve"], {"amount": 1, "order": "o"})
    done = await engine.runtime.resume(other.execution_id, True, wait=True)
    assert done.state.is_final and done.state is not ExecutionState.CANCELLED
    with pytest.raises(InvalidState):
        await engine.runtime.cancel(other.execution_id)


BLOCKING = """
import time
from flux import workflow

@workflow
def sync_sleeper(ctx):
    time.sleep(ctx.input)
    return "slept"

@workflow
async def async_sleeper(ctx):
    time.sleep(ctx.input)
    return "slept"

@workflow
async def trivial(ctx):
    return "quick"
"""


async def _latencies(engine, versions, name) -> tuple[float, float]:
    """How long a trivial run and the loop itself take while `version` blocks its thread."""
    runtime = engine.runtime
    loop = asyncio.get_running_loop()
    slow = await runtime.start(versions[name], 1)
    await asyncio.sleep(0.1)  # the blocking run is well under way by now
    started = loop.time()
    quick = await runtime.run(versions["trivial"], None)
    quick_latency = loop.time() - started
    assert quick.output == "quick"
    started = loop.time()
    await asyncio.sleep(0.01)
    loop_latency = loop.time() - started
    assert (await runtime.wait(slow.execution_id)).output == "slept"
    return quick_latency, loop_latency


async def test_a_sync_workflow_runs_on_a_worker_and_never_stalls_the_loop(engine):
    versions = await engine.register(BLOCKING)
    quick, loop = await _latencies(engine, versions, "sync_sleeper")
    assert quick < 0.5, quick
    assert loop < 0.5, loop


async def test_an_async_workflow_caught_blocking_moves_to_a_worker(engine, caplog):
    versions = await engine.register(BLOCKING)
    # The first runs share the main loop, where each holds it for 0.15 s and is caught.
    for _ in range(3):
        assert (await engine.runtime.run(versions["async_sleeper"], 0.15)).output == "slept"
    assert caplog.text.count("async_sleeper held the event loop") == 3
    assert "its runs go to worker threads from now on" in caplog.text
    # From then on it runs on a worker thread: others and the loop go on meanwhile.
    quick, loop = await _latencies(engine, versions, "async_sleeper")
    assert quick < 0.5, quick
    assert loop < 0.5, loop
    assert caplog.text.count("held the event loop") == 3


async def test_a_run_on_a_worker_can_be_cancelled(engine):
    versions = await engine.register(
        """
import asyncio
import time
from flux import workflow

@workflow
async def blocks_then_waits(ctx):
    time.sleep(ctx.input["block"])
    await asyncio.sleep(ctx.input["wait"])
"""
    )
    waiter = versions["blocks_then_waits"]
    for _ in range(3):  # caught three times: on workers from now on
        await engine.runtime.run(waiter, {"block": 0.15, "wait": 0})
    running = await engine.runtime.start(waiter, {"block": 0, "wait": 60})
    await asyncio.sleep(0.05)
    cancelled = await asyncio.wait_for(engine.runtime.cancel(running.execution_id), 5)
    assert cancelled.state is ExecutionState.CANCELLED
    assert (await engine.storage.executions.get(running.execution_id)).state == "CANCELLED"


async def test_sync_tasks_that_block_run_side_by_side(engine):
    # Sync tasks have a pool of their own: twenty that block at once all run at once, where the
    # loop's default executor (a few threads on a small machine) would queue them.
    versions = await engine.register(
        """
import threading
import time
from flux import task, workflow
from flux.tasks import parallel
from tests.engine import effects

lock = threading.Lock()
running = 0


@task
def blocking_call(n):
    global running
    with lock:
        running += 1
        effects.counts["most at once"] = max(effects.counts["most at once"], running)
    time.sleep(0.3)
    with lock:
        running -= 1
    return n


@workflow
async def fan_out(ctx):
    return await parallel(*(blocking_call(n) for n in range(ctx.input)))
"""
    )
    done = await asyncio.wait_for(engine.runtime.run(versions["fan_out"], 20), 10)
    assert done.output == list(range(20))
    assert effects.counts["most at once"] == 20
