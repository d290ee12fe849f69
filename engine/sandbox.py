"""Reading an uploaded module's workflows in a short-lived sandbox process (SPEC §7).

Registration must import the module to find its workflows and their input schemas, and an
import runs arbitrary code: `os._exit`, a `BaseException`, a busy loop or an endless print.
`inspect_module` therefore runs `engine.sandbox_child` in a fresh interpreter, one per module:

- its own session and process group, so one SIGKILL to the group also ends anything the module
  forked, and a terminal's Ctrl-C does not reach it;
- `-I -S`: no PYTHON* variables, no user site, no .pth hooks; the parent hands over its own
  `sys.path` (plus the roots of our packages, which an editable install reaches only through a
  .pth hook), so the module imports exactly what the runtime would let it import;
- limits set in the child before user code runs: address space, CPU seconds, a wall-clock
  alarm, no core files, and (Linux) death with the server; its stdin, stdout and stderr
  point at /dev/null by then, so output is thrown away in the child and cannot fill the
  server's memory;
- the answer is one length-prefixed frame on the child's original stdout; its size is capped.

The parent keeps the wall-clock limit itself and kills the group when it passes, when the answer
has arrived, or when the caller is cancelled. Every failure becomes `InvalidWorkflowSource`
(400): nothing is stored. The source and its hashes never come back from the child: the parent
computes them from what it sent, so a module cannot make the server store something else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import core
import engine
import flux
import ports
from core.deadlines import valid_timeout
from core.errors import InvalidName, InvalidWorkflowSource, ShuttingDown
from core.model import WorkflowRef
from engine.registration import source_hash
from engine.sandbox_child import HEADER as _HEADER
from engine.sandbox_child import MAGIC as _MAGIC
from ports.catalog import NewWorkflow

DEFAULT_TIMEOUT = 10.0  # seconds; the server passes its `registration_timeout`
DEFAULT_MEMORY_LIMIT = 512 * 2**20  # bytes of address space
MAX_ANSWER = 8 * 2**20  # bytes: schemas and docstrings of one module fit many times over
STDERR_TAIL = 4096  # bytes of the child's stderr kept to explain a death before any answer

_BOOT = "import sys;sys.path[:]=sys.argv[2:];from engine.sandbox_child import main;main(int(sys.argv[1]))"
_DETAIL_KEYS = ("filename", "line", "ref")

_Started = tuple[asyncio.SubprocessTransport, "_Child"]


class _NoAnswer(Exception):
    """The child's stdout ended before a whole frame."""


async def inspect_module(
    source: str,
    filename: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    memory_limit: int | None = DEFAULT_MEMORY_LIMIT,
) -> list[NewWorkflow]:
    """The workflows `source` defines, sorted by ref, read without importing it here.

    `source` is one module named `filename`, or a bundle's text (`encode_bundle`: several
    modules importing each other, all read in the one child); the hashes cover all of it.

    Raises InvalidWorkflowSource with the reason when the module does not compile, fails or
    exits at import, holds no workflow, defines a ref twice, runs out of memory, or does not
    finish within `timeout` seconds (which includes the child's own start).
    """
    return await _inspect_in(await _start(), source, filename, timeout, memory_limit)


class Sandbox:
    """`inspect_module` with one child started ahead of need, for the server's lifetime.

    A fresh interpreter spends most of its start importing asyncio, attrs and pydantic; the
    spare has done that before the request comes, so a registration pays only for its own
    module. Each child still serves one module and is then killed: no module sees another's
    state. The spare runs no user code while it waits, and dies with the server. `close()` ends
    it (the composition root calls it at shutdown)."""

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        memory_limit: int | None = DEFAULT_MEMORY_LIMIT,
    ) -> None:
        self.timeout = timeout
        self.memory_limit = memory_limit
        self._spare: asyncio.Task[_Started] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._reading: set[asyncio.Task[list[NewWorkflow]]] = set()

    async def inspect(self, source: str, filename: str) -> list[NewWorkflow]:
        if self._closed:
            raise ShuttingDown("the server is stopping: register the module again after it starts")
        started = await self._take()
        reading = asyncio.ensure_future(
            _inspect_in(started, source, filename, self.timeout, self.memory_limit)
        )
        self._reading.add(reading)
        try:
            return await reading
        except asyncio.CancelledError:
            if self._closed and reading.cancelled():
                raise ShuttingDown(
                    "the server is stopping: register the module again after it starts"
                ) from None
            raise
        finally:
            self._reading.discard(reading)
            # Only now: a spare starting beside a module's import would slow that import down.
            self._refill()

    async def close(self) -> None:
        """End the spare and every registration under way (their children are killed); a
        registration is no workflow call, nothing is lost by refusing it at a stop."""
        self._closed = True
        for reading in list(self._reading):
            reading.cancel()
        spare, self._spare = self._spare, None
        if spare is not None:
            started = await _settled(spare)
            if started is not None:
                await _finish(started)

    async def _take(self) -> _Started:
        loop = asyncio.get_running_loop()
        spare, self._spare = self._spare, None
        if spare is not None and self._loop is loop:
            started = await _settled(spare)
            # One that died while waiting (the OS killed it, say) must not be blamed on a module.
            if started is not None and started[0].get_returncode() is None:
                return started
            if started is not None:
                await _finish(started)
        elif spare is not None and spare.done() and not spare.cancelled() and not spare.exception():
            # Started on another loop (tests run one per test): its transport is not usable here.
            _kill_group(spare.result()[0].get_pid())
        self._loop = loop
        return await _start()

    def _refill(self) -> None:
        if not self._closed:
            self._spare = asyncio.ensure_future(_start())


async def _settled(spare: asyncio.Task[_Started]) -> _Started | None:
    try:
        return await spare
    except OSError:  # could not start one: the next registration starts its own
        return None


async def _start() -> _Started:
    loop = asyncio.get_running_loop()
    transport, child = await loop.subprocess_exec(
        lambda: _Child(loop),
        sys.executable,
        "-I",
        "-S",
        "-c",
        _BOOT,
        str(os.getpid()),
        *_child_path(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    return transport, child


def _end(started: _Started) -> None:
    transport, child = started
    # A settled answer is marked read, an open one cancelled: no late result goes unread.
    if not child.answer.cancel() and not child.answer.cancelled():
        child.answer.exception()
    _kill_group(transport.get_pid())
    # Closing our ends of the pipes does not depend on who else holds theirs (a grandchild that
    # left the group, say); the kill above makes the exit prompt.
    transport.close()


async def _finish(started: _Started) -> None:
    _end(started)
    # Reaped before we go on, so no caller (or test) sees the process linger after its answer.
    await asyncio.wait([started[1].exited], timeout=1.0)


async def _inspect_in(
    started: _Started, source: str, filename: str, timeout: float, memory_limit: int | None
) -> list[NewWorkflow]:
    transport, child = started
    child.filename = filename
    request = json.dumps(
        {"source": source, "filename": filename, "memory_limit": memory_limit, "timeout": timeout}
    ).encode()
    try:
        # stdin stays open after the request: the child waits on it once it has answered.
        stdin = transport.get_pipe_transport(0)
        assert isinstance(stdin, asyncio.WriteTransport)
        stdin.write(_HEADER.pack(_MAGIC, len(request)) + request)
        async with asyncio.timeout(timeout):
            payload = await child.answer
    except TimeoutError:
        raise InvalidWorkflowSource(
            f"the module did not finish importing within {timeout:g} s", filename=filename
        ) from None
    except _NoAnswer:
        # Its stdout ended; give it a moment to be reaped so the reason can name its exit code.
        await asyncio.wait([child.exited], timeout=1.0)
        reason = _death_reason(transport.get_returncode(), child.tail)
        raise InvalidWorkflowSource(reason, filename=filename) from None
    finally:
        await _finish(started)
    return _workflows_of(payload, source, filename)


def _child_path() -> list[str]:
    # Roots of our own packages first: under an editable install they are not on sys.path.
    roots = [
        str(Path(pkg.__file__ or "").resolve().parents[1]) for pkg in (flux, core, ports, engine)
    ]
    paths = [os.path.abspath(entry or os.curdir) for entry in sys.path]
    return list(dict.fromkeys([*roots, *paths]))


class _Child(asyncio.SubprocessProtocol):
    """Collects one answer frame from fd 1 and the tail of fd 2; notices the exit.

    The frame is decided as soon as its bytes are in, without waiting for the end of the pipe,
    which anything the module forked may hold open; the buffer never outgrows the size cap."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.filename = "<module>"  # set when a request is sent
        self.answer: asyncio.Future[bytes] = loop.create_future()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.tail = bytearray()
        self._out = bytearray()
        self._transport: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)
        self._transport = transport

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 2:
            self.tail += data
            del self.tail[:-STDERR_TAIL]
        elif fd == 1 and not self.answer.done():
            self._out += data
            self._decide()

    def _decide(self) -> None:
        if len(self._out) < _HEADER.size:
            return
        magic, size = _HEADER.unpack_from(self._out)
        if magic != _MAGIC:
            self._refuse("the sandbox answered something that is not a frame")
        elif size > MAX_ANSWER:
            self._refuse(
                f"the module's description is too large ({size} bytes, at most {MAX_ANSWER})"
            )
        elif len(self._out) >= _HEADER.size + size:
            self.answer.set_result(bytes(self._out[_HEADER.size : _HEADER.size + size]))
            self._out.clear()

    def _refuse(self, message: str) -> None:
        self.answer.set_exception(InvalidWorkflowSource(message, filename=self.filename))
        self._out.clear()

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1 and not self.answer.done():
            self.answer.set_exception(_NoAnswer())

    def process_exited(self) -> None:
        # What it wrote is in the pipe; what it forked may keep the pipe open: end the group so
        # the end of the pipe comes (and with it the frame or its absence).
        if self._transport is not None:
            _kill_group(self._transport.get_pid())
        if not self.exited.done():
            self.exited.set_result(None)


def _kill_group(pid: int) -> None:
    # The group is the one the child leads (start_new_session): this never reaches anyone else.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _death_reason(returncode: int | None, tail: bytearray) -> str:
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        how = {
            "SIGXCPU": "it used more CPU time than registration allows",
            "SIGALRM": "it ran past the registration time limit",
        }.get(name, f"killed by {name}")
    elif returncode is None:
        how = "it closed the channel of its answer"
    else:
        how = f"exit code {returncode}: os._exit() or a crash of the interpreter"
    reason = f"importing the module ended its process before its workflows were read ({how})"
    last = bytes(tail).decode(errors="replace").strip().splitlines()
    return f"{reason}: {last[-1]}" if last else reason


def _workflows_of(payload: bytes, source: str, filename: str) -> list[NewWorkflow]:
    try:
        answer = json.loads(payload)
        if "error" in answer:
            details = answer.get("details") or {}
            kept = {key: details[key] for key in _DETAIL_KEYS if key in details}
            raise InvalidWorkflowSource(str(answer["error"]), **kept)
        found = [_new_workflow(item, source) for item in answer["workflows"]]
    except (ValueError, TypeError, KeyError, AttributeError, InvalidName) as exc:
        raise InvalidWorkflowSource(
            f"the sandbox's answer cannot be read: {exc}", filename=filename
        ) from None
    if not found:
        raise InvalidWorkflowSource(f"{filename} defines no workflow", filename=filename)
    return sorted(found, key=lambda item: item.ref)


def _new_workflow(item: Any, source: str) -> NewWorkflow:
    ref = WorkflowRef.parse(item["ref"])
    schema, description = item["input_schema"], item["description"]
    if not (schema is None or isinstance(schema, dict)) or not isinstance(description, str):
        raise TypeError(f"unexpected description of '{ref}'")
    return NewWorkflow(
        ref=ref,
        source=source,
        source_hash=source_hash(source, ref),
        input_schema=schema,
        description=description,
        timeout=valid_timeout(item.get("timeout"), f"the timeout of '{ref}'"),
    )
