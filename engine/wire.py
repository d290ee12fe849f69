"""The link between the server and one of its local worker processes: length-prefixed JSON
frames over a Unix socket, and the values that cross it.

One connection carries everything in both directions: the server pushes work and revocations,
the worker asks (save, append, renew, ...) with a request id and the server answers with that
id, so many requests are in flight on the one connection at once. A frame is a 4-byte
big-endian length and that many bytes of JSON.
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

from core.model import (
    EventKind,
    Execution,
    ExecutionError,
    ExecutionEvent,
    ExecutionState,
    WorkflowInfo,
    WorkflowRef,
    WorkflowVersion,
)

MAX_FRAME = 256 * 2**20  # a frame past this is a broken peer, not a message
_LENGTH = struct.Struct(">I")
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)


class LinkClosed(Exception):
    """The other end of the link has gone (or sent something that is not a frame)."""


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any]:
    try:
        header = await reader.readexactly(_LENGTH.size)
        (length,) = _LENGTH.unpack(header)
        if length > MAX_FRAME:
            raise LinkClosed(f"a frame of {length} bytes is over the limit")
        message = json.loads(await reader.readexactly(length))
    except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
        raise LinkClosed(str(exc) or type(exc).__name__) from None
    if not isinstance(message, dict):
        raise LinkClosed("a frame that is not a JSON object")
    return message


def frame(message: dict[str, Any]) -> bytes:
    data = _ENCODER.encode(message).encode()
    return _LENGTH.pack(len(data)) + data


class FrameWriter:
    """Frames written to `writer` once per turn of the event loop, all together: at load many
    messages go out in one turn, and one send wakes the other end once instead of each time."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._queued: list[bytes] = []

    def send(self, message: dict[str, Any]) -> None:
        if not self._queued:
            asyncio.get_running_loop().call_soon(self._flush)
        self._queued.append(frame(message))

    def _flush(self) -> None:
        queued, self._queued = self._queued, []
        if not self._writer.is_closing():
            self._writer.write(b"".join(queued))

    def close(self) -> None:
        self._writer.close()


# -- values ---------------------------------------------------------------------------------


def execution_out(execution: Execution) -> dict[str, Any]:
    error = execution.error
    return {
        "id": execution.execution_id,
        "ref": str(execution.ref),
        "version": execution.version,
        "state": execution.state.value,
        "input": execution.input,
        "output": execution.output,
        "error": None if error is None else error.as_json(),
        "pause": execution.pause_name,
        "created": execution.created_at,
        "updated": execution.updated_at,
        "service": execution.service,
        "deadline": execution.deadline,
        "left": execution.time_left,
        "callback": execution.callback_url,
    }


def execution_in(data: dict[str, Any]) -> Execution:
    error = data["error"]
    return Execution(
        execution_id=data["id"],
        ref=WorkflowRef.parse(data["ref"]),
        version=data["version"],
        state=ExecutionState(data["state"]),
        input=data["input"],
        output=data["output"],
        error=None if error is None else ExecutionError(error["type"], error["message"]),
        pause_name=data["pause"],
        created_at=data["created"],
        updated_at=data["updated"],
        service=data["service"],
        deadline=data["deadline"],
        time_left=data["left"],
        callback_url=data["callback"],
    )


def event_out(event: ExecutionEvent) -> list[Any]:
    return [event.execution_id, event.seq, event.kind.value, event.key, event.value, event.at]


def event_in(data: list[Any]) -> ExecutionEvent:
    execution_id, seq, kind, key, value, at = data
    return ExecutionEvent(execution_id, seq, EventKind(kind), key, value, at)


def events_in(data: list[list[Any]]) -> list[ExecutionEvent]:
    return [event_in(item) for item in data]


def version_out(version: WorkflowVersion) -> dict[str, Any]:
    info = version.info
    return {
        "ref": str(info.ref),
        "version": info.version,
        "schema": None if info.input_schema is None else dict(info.input_schema),
        "description": info.description,
        "source": version.source,
        "hash": version.source_hash,
        "created": version.created_at,
    }


def version_in(data: dict[str, Any]) -> WorkflowVersion:
    info = WorkflowInfo(
        WorkflowRef.parse(data["ref"]), data["version"], data["schema"], data["description"]
    )
    return WorkflowVersion(info, data["source"], data["hash"], data["created"])
