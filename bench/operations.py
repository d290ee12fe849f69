"""The operations the load generator repeats, each checking that the answer is the right one."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp

from bench.load import Failed, Operation

JSON = {"Content-Type": "application/json"}
BODY: dict[str, Any] = {"customer_id": "C-100", "amount": 99.5, "lines": [1, 2, 3]}

# Bounds of one async operation's status polling.
MAX_POLLS = 10_000
POLL_SECONDS = 30.0


def _payload(body: Any) -> bytes:
    return json.dumps(body).encode()


async def _json(answer: aiohttp.ClientResponse, expected: int, step: str) -> Any:
    raw = await answer.read()
    if answer.status != expected:
        detail = ""
        if answer.content_type == "application/json":
            try:
                detail = f" {json.loads(raw).get('error')}"
            except (ValueError, AttributeError):
                pass
        raise Failed(f"{step}: HTTP {answer.status}{detail} (expected {expected})")
    try:
        return json.loads(raw)
    except ValueError:
        raise Failed("answer is not JSON") from None


def echo_call(url: str, body: Any = BODY) -> Operation:
    """POST a JSON body; 200 with the same JSON back (the ceiling and the sync service call)."""
    payload = _payload(body)

    async def operation(session: aiohttp.ClientSession) -> int:
        async with session.post(url, data=payload, headers=JSON) as answer:
            if await _json(answer, 200, "call") != body:
                raise Failed("output differs from input")
        return 1

    return operation


def async_run(base_url: str, path: str, body: Any = BODY) -> Operation:
    """POST {path}/async (202), then GET its status_url until COMPLETED; polls at once, no sleep."""
    payload = _payload(body)
    submit_url = f"{base_url}{path}/async"

    async def operation(session: aiohttp.ClientSession) -> int:
        async with session.post(submit_url, data=payload, headers=JSON) as answer:
            accepted = await _json(answer, 202, "submit")
        status_url = base_url + accepted["status_url"]
        deadline = time.perf_counter() + POLL_SECONDS
        for polls in range(1, MAX_POLLS + 1):
            async with session.get(status_url) as answer:
                status = await _json(answer, 200, "status")
            state = status.get("state")
            if state == "COMPLETED":
                if status.get("output") != body:
                    raise Failed("output differs from input")
                return 1 + polls
            if state in ("FAILED", "CANCELLED") or time.perf_counter() > deadline:
                raise Failed(f"async run ended {state}")
        raise Failed("async run not COMPLETED within the poll limit")

    return operation


def pause_resume(base_url: str, path: str, body: Any = BODY) -> Operation:
    """POST {path} (202 PAUSED with resume_url), then POST the resume (200, output has the body)."""
    payload = _payload(body)
    decision = {"approved": True}
    resume_payload = _payload(decision)

    async def operation(session: aiohttp.ClientSession) -> int:
        async with session.post(base_url + path, data=payload, headers=JSON) as answer:
            paused = await _json(answer, 202, "pause")
        if paused.get("state") != "PAUSED" or "resume_url" not in paused:
            raise Failed(f"not paused: {paused.get('state')}")
        resume_url = base_url + paused["resume_url"]
        async with session.post(resume_url, data=resume_payload, headers=JSON) as answer:
            output = await _json(answer, 200, "resume")
        if output != {"decision": decision}:
            raise Failed("resume output differs")
        return 2

    return operation
