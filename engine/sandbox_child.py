"""The child side of the registration sandbox (engine/sandbox.py starts it; nothing else should).

Protocol, one request per process:

- argv: the server's PID, then the entries of sys.path;
- stdin: a frame (see `read_frame`) holding JSON {"source", "filename", "memory_limit",
  "timeout"} (`source` is one module, or a bundle's text: engine.bundles.encode_bundle);
  stdin then stays open and silent until the parent kills this process;
- fd 1, as inherited: one frame holding the JSON answer, either
  {"workflows": [{"ref", "input_schema", "description", "timeout"}, ...]} or
  {"error": message, "details": {...}}.

Before any user code runs, fds 0, 1 and 2 are pointed at /dev/null: whatever the module prints
or reads never reaches the parent, and only this file writes to the saved answer fd. Once the
answer is written this process waits to be killed instead of exiting: the parent then kills the
whole process group while this process, its leader, is certainly still alive, and Python's
teardown (which user code could hang through atexit or non-daemon threads) never runs.
"""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import struct
from typing import Any

MAGIC = b"FLUXSBX1"
HEADER = struct.Struct(">8sQ")  # magic, payload length
MAX_REQUEST = 64 * 2**20  # bytes; the server caps uploads far below this

# Read once before any request: pydantic imports most of itself, and scans the installed
# packages for plugins, only when its first model is built and described, which costs a
# spare child ~40 ms it would otherwise spend after the module arrived. Our code, no user's.
WARM_UP = """
from pydantic import BaseModel
from flux import ExecutionContext, task, workflow
from flux.tasks import pause


class WarmInput(BaseModel):
    n: int


@task
async def double(n: int) -> int:
    return 2 * n


@workflow
async def warm(ctx: ExecutionContext[WarmInput]):
    return await double(ctx.input.n)
"""


def write_frame(fd: int, payload: bytes) -> None:
    data = HEADER.pack(MAGIC, len(payload)) + payload
    while data:
        written = os.write(fd, data)
        data = data[written:]


def read_frame(fd: int) -> bytes:
    header = _read_exactly(fd, HEADER.size)
    magic, size = HEADER.unpack(header)
    if magic != MAGIC or size > MAX_REQUEST:
        raise ValueError("malformed request frame")
    return _read_exactly(fd, size)


def _read_exactly(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = os.read(fd, min(size, 2**20))
        if not chunk:
            raise EOFError("the parent closed the request early")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _limit(which: int, value: int) -> None:
    # Soft and hard alike, so user code cannot raise them back; never above an existing hard cap.
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value if which != resource.RLIMIT_CPU else value + 1))


def apply_limits(memory_limit: int | None, timeout: float) -> None:
    _limit(resource.RLIMIT_CORE, 0)  # a crash in user code must not write a core file
    if memory_limit:
        _limit(resource.RLIMIT_AS, memory_limit)
    # The parent kills this process at `timeout`; these two are for when it cannot (it died, or
    # was SIGKILLed): a busy loop is stopped by SIGXCPU, a sleeping module by SIGALRM.
    _limit(resource.RLIMIT_CPU, math.ceil(timeout) + 1)
    signal.alarm(math.ceil(timeout) + 2)


def die_with_parent(parent: int) -> None:
    """Linux: be SIGKILLed when the server goes, even by SIGKILL (best effort elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the alarm and the CPU limit still end this process
    if os.getppid() != parent:  # the server went before the line above took effect
        os._exit(1)


def _silence_standard_fds() -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def inspect(source: str, filename: str) -> dict[str, Any]:
    """Import the module through the same loader the runtime uses; describe what it holds."""
    from core.errors import InvalidWorkflowSource
    from engine.bundles import decode_bundle
    from engine.registration import _import_failure, load_workflows

    try:
        loaded = load_workflows(source, filename)
    except InvalidWorkflowSource as exc:
        message = exc.message
        # load_workflows raises "from None", which keeps the original as __context__.
        if isinstance(exc.__context__, MemoryError):
            message += " (the module needs more memory than registration allows)"
        return {"error": message, "details": exc.details}
    except BaseException as exc:  # noqa: B036 - KeyboardInterrupt, GeneratorExit, custom ones
        bundle = decode_bundle(source) or {}  # a bundle's lines are in its files
        return {"error": _import_failure(exc, filename, bundle), "details": {"filename": filename}}
    return {
        "workflows": [
            {
                "ref": str(item.ref),
                "input_schema": item.input_schema,
                "description": item.description,
                "timeout": item.timeout,
            }
            for item in loaded
        ]
    }


def _encode(answer: dict[str, Any]) -> bytes:
    try:
        return json.dumps(answer, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        fallback = {"error": f"the module's description cannot be sent as JSON: {exc}"}
        return json.dumps(fallback).encode()


def main(parent: int) -> None:
    die_with_parent(parent)
    answer_fd = os.dup(1)
    hold_fd = os.dup(0)  # stays open until the parent is gone: lets us wait without a timer
    # Our own imports come before the request (a spare child waits with them done) and before
    # stderr is silenced, so a broken installation shows its traceback to the parent.
    from engine.registration import load_workflows

    load_workflows(WARM_UP, "<warm-up>")

    try:
        request = json.loads(read_frame(0))
    except EOFError:  # a spare the server no longer needs
        os._exit(0)
    apply_limits(request.get("memory_limit"), float(request["timeout"]))
    _silence_standard_fds()
    try:
        answer = inspect(request["source"], request["filename"])
    except BaseException as exc:  # noqa: B036 - e.g. MemoryError while describing
        answer = {"error": f"registration failed: {type(exc).__name__}: {exc}"}
    write_frame(answer_fd, _encode(answer))
    while os.read(hold_fd, 1):  # the parent sends nothing more; EOF means it went away
        pass
    os._exit(0)
