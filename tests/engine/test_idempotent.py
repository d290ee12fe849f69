"""The Idempotency-Key use case (engine/idempotent.py) on the in-process runtime: the races the
end-to-end tests cannot time, made deterministic by slowing one storage write down."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from core.errors import IdempotencyKeyReused
from core.idempotency import fingerprint, principal_identity
from core.model import WorkflowRef
from core.permissions import EVERYONE
from engine import idempotent
from engine.calls import ServiceCalls, Target
from engine.idempotent import IdempotentCalls
from engine.lookup import ServiceLookup
from engine.runtime import Runtime
from tests.engine import effects

SOURCE = """
from flux import ExecutionContext, pause, task, workflow
from tests.engine import effects


@task
async def count(name: str) -> int:
    return effects.bump(name)


@workflow.with_options(namespace="keys")
async def once(ctx: ExecutionContext):
    return {"runs": await count("once")}


@workflow.with_options(namespace="keys")
async def approval(ctx: ExecutionContext):
    answer = await pause("approval")
    return {"answer": answer, "resumes": await count("resumed")}
"""

ONCE = Target.workflow(WorkflowRef("keys", "once"))
APPROVAL = Target.workflow(WorkflowRef("keys", "approval"))


class SlowCreates:
    """The execution log, with the first `create` held until released: a request that claimed
    its key and has not stored its execution yet."""

    def __init__(self, log: Any) -> None:
        self._log = log
        self.release = asyncio.Event()
        self._held = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)

    async def create(self, execution: Any) -> None:
        if not self._held:
            self._held = True
            await self.release.wait()
        await self._log.create(execution)


class SlowReads:
    """The execution log, every `get` taking a moment: concurrent callers all read before any
    of them writes."""

    def __init__(self, log: Any) -> None:
        self._log = log

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)

    async def get(self, execution_id: str) -> Any:
        await asyncio.sleep(0.01)
        return await self._log.get(execution_id)


async def calls_over(engine, log: Any = None) -> IdempotentCalls:
    await engine.register(SOURCE)
    if log is not None:
        await engine.runtime.close()
        engine.runtime = Runtime(log, loader=engine.loader)
    storage = engine.storage
    lookup = ServiceLookup(storage.catalog, storage.services, storage.revisions)
    return IdempotentCalls(ServiceCalls(lookup, engine.runtime), storage.idempotency)


async def test_concurrent_calls_with_one_key_run_once_and_agree(engine):
    calls = await calls_over(engine)
    answers = await asyncio.gather(*(calls.call(EVERYONE, ONCE, {}, "k") for _ in range(16)))
    assert {a.execution.execution_id for a in answers} == {answers[0].execution.execution_id}
    assert [a.replayed for a in answers].count(False) == 1
    assert all(a.execution.output == {"runs": 1} for a in answers)
    assert effects.counts["once"] == 1 and len(await engine.stored()) == 1


async def test_a_winner_slower_than_the_grace_is_overtaken_and_attaches(engine, monkeypatch):
    monkeypatch.setattr(idempotent, "GRACE", 0.1)
    slow = SlowCreates(engine.storage.executions)
    calls = await calls_over(engine, slow)
    first = asyncio.ensure_future(calls.call(EVERYONE, ONCE, {}, "k"))
    await asyncio.sleep(0.01)  # the first has claimed the key; its store is held
    retry = await asyncio.wait_for(calls.call(EVERYONE, ONCE, {}, "k"), 5)
    assert retry.replayed and retry.execution.output == {"runs": 1}
    slow.release.set()
    winner = await asyncio.wait_for(first, 5)
    assert winner.execution.execution_id == retry.execution.execution_id
    assert effects.counts["once"] == 1 and len(await engine.stored()) == 1


async def test_a_retry_waits_for_a_first_request_still_storing_within_the_grace(engine):
    slow = SlowCreates(engine.storage.executions)
    calls = await calls_over(engine, slow)
    first = asyncio.ensure_future(calls.call(EVERYONE, ONCE, {}, "k"))
    await asyncio.sleep(0.01)
    retry = asyncio.ensure_future(calls.call(EVERYONE, ONCE, {}, "k"))
    await asyncio.sleep(0.2)
    assert not retry.done()  # looking for the execution the key promised, not running it
    slow.release.set()
    answers = await asyncio.wait_for(asyncio.gather(first, retry), 5)
    assert [a.replayed for a in answers] == [False, True]
    assert effects.counts["once"] == 1


async def test_concurrent_resumes_with_one_key_resume_once(engine):
    calls = await calls_over(engine)
    paused = (await calls.call(EVERYONE, APPROVAL, {}, None)).execution
    answers = await asyncio.gather(
        *(calls.resume(EVERYONE, APPROVAL, paused.execution_id, "yes", "r") for _ in range(8))
    )
    assert all(a.execution.output == {"answer": "yes", "resumes": 1} for a in answers)
    assert [a.replayed for a in answers].count(False) == 1
    assert effects.counts["resumed"] == 1


async def test_a_key_reused_for_another_body_is_refused_without_running(engine):
    calls = await calls_over(engine)
    await calls.call(EVERYONE, ONCE, {"n": 1}, "k")
    with pytest.raises(IdempotencyKeyReused):
        await calls.call(EVERYONE, ONCE, {"n": 2}, "k")
    with pytest.raises(IdempotencyKeyReused):
        await calls.call(EVERYONE, ONCE, {"n": 1}, "k", version=1)
    assert effects.counts["once"] == 1


async def test_retries_of_a_lost_resume_resume_once_and_keep_the_key(engine, monkeypatch):
    monkeypatch.setattr(idempotent, "GRACE", 0.05)
    calls = await calls_over(engine, SlowReads(engine.storage.executions))
    paused = (await calls.call(EVERYONE, APPROVAL, {}, None)).execution
    # What a server that died right after claiming a resume's key leaves behind.
    print_ = fingerprint(
        "resume", "workflow:keys/approval", "yes", execution_id=paused.execution_id
    )
    who = principal_identity(EVERYONE)
    await engine.storage.idempotency.claim(
        who, "r", print_, paused.execution_id, now=time.time(), window=60
    )
    await asyncio.sleep(0.06)
    retries = [calls.resume(EVERYONE, APPROVAL, paused.execution_id, "yes", "r") for _ in range(4)]
    answers = await asyncio.gather(*retries)
    again = await calls.resume(EVERYONE, APPROVAL, paused.execution_id, "yes", "r")
    for answer in [*answers, again]:
        assert answer.replayed and answer.execution.output == {"answer": "yes", "resumes": 1}
    assert effects.counts["resumed"] == 1
