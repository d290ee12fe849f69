"""The sync call with a fresh `Idempotency-Key` per call against the same call without one, in
alternating rounds of one run on one server; plus retries of one key (replays, nothing runs).

What a key costs the server: its claim (one more write, in the same group commit as the
execution's own writes on SQLite), the request's fingerprint (a SHA-256 of its canonical JSON),
and the header. The target: at most +15% server CPU per call.
"""

from __future__ import annotations

import itertools
import json
import uuid
from typing import Any

import aiohttp

from bench.load import Failed, LoadResult, Operation, cpu_us_per_call
from bench.operations import BODY, JSON, echo_call
from bench.scenarios import SYNC_PATH, Suite, run_row

CONCURRENCIES = (1, 16)
TARGET = 1.15  # server CPU per call with a key / without, at most


def keyed_call(url: str, key: str | None = None, body: Any = BODY) -> Operation:
    """`echo_call` with an Idempotency-Key: a fresh one per call, or `key` on every call (each
    call after the first is then a retry, answered `Idempotent-Replayed: true`)."""
    payload = json.dumps(body).encode()
    fresh = itertools.count()
    prefix = uuid.uuid4().hex

    async def operation(session: aiohttp.ClientSession) -> int:
        sent = key or f"{prefix}-{next(fresh)}"
        headers = {**JSON, "Idempotency-Key": sent}
        async with session.post(url, data=payload, headers=headers) as answer:
            if answer.status != 200:
                raise Failed(f"call: HTTP {answer.status} (expected 200)")
            if json.loads(await answer.read()) != body:
                raise Failed("output differs from input")
            if key is None and "Idempotent-Replayed" in answer.headers:
                raise Failed("a fresh key was answered as a replay")
        return 1

    return operation


def cpu_row(case: str, result: LoadResult) -> dict[str, Any]:
    return {**run_row(case, result), "server_cpu_us_per_call": server_cpu_us(result)}


def server_cpu_us(result: LoadResult) -> float | None:
    return cpu_us_per_call(result, result.server_cpu_pct)


async def idempotency(suite: Suite) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    ratios: dict[str, float | None] = {}
    async with suite.flux("idempotency") as server:
        url = server.url + SYNC_PATH
        plain, fresh, replayed = echo_call(url), keyed_call(url), keyed_call(url, "bench-one-key")
        for concurrency in CONCURRENCIES:
            without, with_key, replay = await suite.compare(
                [
                    ("idempotency baseline: sync", plain, [server]),
                    ("sync, a fresh Idempotency-Key per call", fresh, [server]),
                    ("sync, one key retried (replays)", replayed, [server]),
                ],
                concurrency,
            )
            runs.append(cpu_row("baseline: sync call without a key", without))
            runs.append(cpu_row("sync call, a fresh Idempotency-Key per call", with_key))
            runs.append(cpu_row("sync call, one key retried (replays)", replay))
            base, keyed = server_cpu_us(without), server_cpu_us(with_key)
            ratios[f"c{concurrency}"] = round(keyed / base, 3) if base and keyed else None
    return {
        "title": "Idempotency-Key: sync calls with a fresh key per call vs without",
        "runs": runs,
        "cpu_per_call_ratio": ratios,
        "target_ratio": TARGET,
    }
