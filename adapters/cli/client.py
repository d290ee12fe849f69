"""A small blocking HTTP client for the CLI: each call runs one aiohttp request to completion.

The CLI is a short-lived process with nothing else on its event loop, so `asyncio.run` per call
is the simple and safe choice here (never do this inside a server).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import click
from attrs import frozen

CONNECT_TIMEOUT = 10.0

T = TypeVar("T")


class CliError(click.ClickException):
    """A command failed for a reason outside the user's typing (exit code 1)."""

    exit_code = 1


class ApiError(CliError):
    """The server answered with an error status."""

    def __init__(self, status: int, body: Any, text: str | None = None) -> None:
        self.status = status
        self.body = body
        super().__init__(f"{text or _error_text(status, body)} ({status})")


class Unreachable(CliError):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url} ({reason})")


class NoAnswer(CliError):
    """The server took the connection but did not answer in time."""

    def __init__(self, url: str, timeout: float) -> None:
        super().__init__(f"no answer from {url} within {timeout:g}s (a longer wait: --timeout)")


def _error_text(status: int, body: Any) -> str:
    if isinstance(body, Mapping):
        message = body.get("message")
        if isinstance(message, str) and message:
            return _with_field_errors(message, body.get("errors"))
        error = body.get("error")
        if isinstance(error, str):
            return error
    if isinstance(body, str) and body.strip():
        return body.strip().splitlines()[0][:200]
    return f"server answered HTTP {status}"


def _with_field_errors(message: str, errors: Any) -> str:
    """A 422's message with each field error (`amount: Input should be a valid number`), unless
    the message already names them all."""
    if not isinstance(errors, list):
        return message
    fields: list[str] = []
    for error in errors:
        if not isinstance(error, Mapping) or not isinstance(error.get("msg"), str):
            continue
        loc = error.get("loc")
        where = ".".join(map(str, loc)) if isinstance(loc, list | tuple) and loc else "input"
        fields.append(f"{where}: {error['msg']}")
    missing = [text for text in fields if text not in message]
    if not missing:
        return message
    return f"{message}: {'; '.join(fields)}"


@frozen
class Response:
    status: int
    body: Any  # decoded JSON, or the text when the server did not send JSON


def path_of(*segments: str) -> str:
    """Join URL path segments, quoting each one (refs and ids are user input)."""
    return "/" + "/".join(quote(str(s), safe="") for s in segments)


# A multipart upload: (field name, file name, content).
Part = tuple[str, str, bytes]


class FluxClient:
    """`timeout`: seconds a whole call may take (None: as long as it takes; the connection
    itself must still be made within CONNECT_TIMEOUT)."""

    def __init__(
        self, server_url: str, api_key: str | None = None, timeout: float | None = 30.0
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def with_timeout(self, timeout: float | None) -> FluxClient:
        return FluxClient(self.server_url, self.api_key, timeout)

    def _headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        headers.update(extra or {})
        return headers

    def _session(self) -> aiohttp.ClientSession:
        connect = CONNECT_TIMEOUT if self.timeout is None else min(CONNECT_TIMEOUT, self.timeout)
        timeout = aiohttp.ClientTimeout(total=self.timeout, sock_connect=connect)
        return aiohttp.ClientSession(timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        has_body: bool = False,
        data: bytes | str | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        parts: list[Part] | None = None,
        ok: tuple[int, ...] = (),
    ) -> Response:
        """Send one request. A status of 400 or more raises `ApiError` unless listed in `ok`;
        `has_body` sends `json_body` even when it is None (a JSON `null` input); `parts` sends
        a multipart/form-data body instead."""
        url = self.server_url + path
        extra = dict(headers or {})
        payload: bytes | str | None = data
        if has_body or json_body is not None:
            payload = json.dumps(json_body)
            extra.setdefault("Content-Type", "application/json")

        async def send() -> Response:
            body: bytes | str | aiohttp.FormData | None = payload
            if parts is not None:
                body = aiohttp.FormData(quote_fields=False)
                for field, filename, content in parts:
                    body.add_field(field, content, filename=filename, content_type="text/x-python")
            async with (
                self._session() as session,
                session.request(
                    method,
                    url,
                    data=body,
                    params=_clean(params),
                    headers=self._headers(extra),
                ) as resp,
            ):
                text = await resp.text()
                return Response(resp.status, _decode(text, resp.content_type))

        response = self._run(send())
        if response.status >= 400 and response.status not in ok:
            raise ApiError(response.status, response.body)
        return response

    def stream(
        self,
        path: str,
        *,
        json_body: Any,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        on_event: Callable[[str, Any], None],
    ) -> int:
        """POST and hand each server-sent event to `on_event(kind, data)`; returns the status.
        A non-stream answer (an error, say) raises `ApiError` like `request`. `headers`: more
        request headers (an Idempotency-Key)."""
        url = self.server_url + path

        async def send() -> int:
            async with (
                self._session() as session,
                session.post(
                    url,
                    data=json.dumps(json_body),
                    params=_clean(params),
                    headers=self._headers(
                        {
                            **(headers or {}),
                            "Content-Type": "application/json",
                            "Accept": "text/event-stream",
                        }
                    ),
                ) as resp,
            ):
                if resp.content_type != "text/event-stream":
                    body = _decode(await resp.text(), resp.content_type)
                    if resp.status >= 400:
                        raise ApiError(resp.status, body)
                    on_event("state", body)
                    return resp.status
                await _read_events(resp, lambda _id, kind, data: on_event(kind, data))
                return resp.status

        return self._run(send())

    def follow(
        self,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        on_event: Callable[[str | None, str, Any], None],
    ) -> int:
        """GET an event stream and hand each event to `on_event(id, kind, data)` until the
        server ends it; returns the status. An error answer raises `ApiError`."""
        url = self.server_url + path

        async def send() -> int:
            wanted = {"Accept": "text/event-stream", **(headers or {})}
            async with (
                self._session() as session,
                session.get(url, headers=self._headers(wanted)) as resp,
            ):
                if resp.content_type != "text/event-stream":
                    body = _decode(await resp.text(), resp.content_type)
                    if resp.status >= 400:
                        raise ApiError(resp.status, body)
                    raise ApiError(resp.status, body, "the server answered no event stream")
                await _read_events(resp, on_event)
                return resp.status

        return self._run(send())

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return asyncio.run(coro)
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
            raise Unreachable(self.server_url, _reason(exc)) from None
        except aiohttp.ConnectionTimeoutError:
            raise Unreachable(self.server_url, "connection timed out") from None
        except TimeoutError:
            raise NoAnswer(self.server_url, self.timeout or 0.0) from None
        except aiohttp.InvalidURL:
            raise CliError(f"invalid server URL {self.server_url!r}") from None
        except aiohttp.ClientError as exc:
            raise Unreachable(self.server_url, _reason(exc)) from None


async def _read_events(
    resp: aiohttp.ClientResponse, on_event: Callable[[str | None, str, Any], None]
) -> None:
    """Server-sent events: `id:`, `event:` and `data:` lines, a blank line ending each."""
    event_id: str | None = None
    kind = "message"
    data_lines: list[str] = []
    async for raw in resp.content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data_lines:
                on_event(event_id, kind, _decode("\n".join(data_lines), "application/json"))
            event_id, kind, data_lines = None, "message", []
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data_lines.append(line[5:].lstrip())
    if data_lines:
        on_event(event_id, kind, _decode("\n".join(data_lines), "application/json"))


def _reason(exc: BaseException) -> str:
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError) and os_error.errno:
        text = os.strerror(os_error.errno)
    elif os_error is not None:
        text = str(os_error)
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split()).lower()


def _clean(params: Mapping[str, Any] | None) -> dict[str, str] | None:
    if not params:
        return None
    out: dict[str, str] = {}
    for key, value in params.items():
        if value is None or value is False:
            continue
        out[key] = "true" if value is True else str(value)
    return out or None


def _decode(text: str, content_type: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
