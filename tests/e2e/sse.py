"""A small server-sent events client for the end-to-end tests: open a stream over HTTP on
127.0.0.1, read its events (bounded in count and by the socket timeout), close it mid-way."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from attrs import frozen


@frozen
class Event:
    id: int | None
    kind: str
    data: Any


@frozen
class Stream:
    connection: http.client.HTTPConnection
    answer: http.client.HTTPResponse

    @property
    def status(self) -> int:
        return self.answer.status

    def header(self, name: str) -> str | None:
        return self.answer.getheader(name)

    def close(self) -> None:
        """Hang up, as a client that goes away mid-stream does."""
        self.answer.close()
        self.connection.close()


def open_stream(
    url: str,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 20.0,
) -> Stream:
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1" and parts.port is not None
    connection = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=timeout)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    data = None if body is None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    connection.request(method, path, body=data, headers=sent)
    return Stream(connection, connection.getresponse())


def read_events(
    stream: Stream, *, until: Callable[[Event], bool] | None = None, limit: int = 500
) -> list[Event]:
    """Events until the stream ends, or up to and including the first that `until` accepts."""
    events: list[Event] = []
    event_id: int | None = None
    kind = "message"
    for _ in range(limit * 4):
        line = stream.answer.readline()
        if not line:
            break
        text = line.decode().rstrip("\r\n")
        if text.startswith("id:"):
            event_id = int(text[3:].strip())
        elif text.startswith("event:"):
            kind = text[6:].strip()
        elif text.startswith("data:"):
            events.append(Event(event_id, kind, json.loads(text[5:])))
        elif text == "":
            event_id, kind = None, "message"
            if events and until is not None and until(events[-1]):
                break
        if len(events) >= limit:
            break
    return events


def read_all(url: str, headers: dict[str, str] | None = None) -> tuple[Stream, list[Event]]:
    stream = open_stream(url, headers=headers)
    try:
        return stream, read_events(stream)
    finally:
        stream.close()
