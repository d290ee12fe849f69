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

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        super().__init__(f"{_error_text(status, body)} ({status})")


class Unreachable(CliError):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url} ({reason})")


def _error_text(status: int, body: Any) -> str:
    if isinstance(body, Mapping):
        message = body.get("message")
        if isinstance(message, str) and message:
            return message
        error = body.get("error")
        if isinstance(error, str):
            return error
    if isinstance(body, str) and body.strip():
        return body.strip().splitlines()[0][:200]
    return f"server answered HTTP {status}"


@frozen
class Response:
    status: int
    body: Any  # decoded JSON, or the text when the server did not send JSON


def path_of(*segments: str) -> str:
    """Join URL path segments, quoting each one (refs and ids are user input)."""
    return "/" + "/".join(quote(str(s), safe="") for s in segments)


class FluxClient:
    def __init__(self, server_url: str, api_key: str | None = None, timeout: float = 300.0):
        self.server_url = server_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def _headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        headers.update(extra or {})
        return headers

    def _session(self) -> aiohttp.ClientSession:
        timeout = aiohttp.ClientTimeout(total=self.timeout, sock_connect=CONNECT_TIMEOUT)
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
        ok: tuple[int, ...] = (),
    ) -> Response:
        """Send one request. A status of 400 or more raises `ApiError` unless listed in `ok`;
        `has_body` sends `json_body` even when it is None (a JSON `null` input)."""
        url = self.server_url + path
        extra = dict(headers or {})
        payload = data
        if has_body or json_body is not None:
            payload = json.dumps(json_body)
            extra.setdefault("Content-Type", "application/json")

        async def send() -> Response:
            async with (
                self._session() as session,
                session.request(
                    method,
                    url,
                    data=payload,
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
        on_event: Callable[[str, Any], None],
    ) -> int:
        """POST and hand each server-sent event to `on_event(kind, data)`; returns the status.
        A non-stream answer (an error, say) raises `ApiError` like `request`."""
        url = self.server_url + path

        async def send() -> int:
            async with (
                self._session() as session,
                session.post(
                    url,
                    data=json.dumps(json_body),
                    params=_clean(params),
                    headers=self._headers(
                        {"Content-Type": "application/json", "Accept": "text/event-stream"}
                    ),
                ) as resp,
            ):
                if resp.content_type != "text/event-stream":
                    body = _decode(await resp.text(), resp.content_type)
                    if resp.status >= 400:
                        raise ApiError(resp.status, body)
                    on_event("state", body)
                    return resp.status
                kind = "message"
                data_lines: list[str] = []
                async for raw in resp.content:
                    line = raw.decode("utf-8").rstrip("\r\n")
                    if not line:
                        if data_lines:
                            on_event(kind, _decode("\n".join(data_lines), "application/json"))
                        kind, data_lines = "message", []
                    elif line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data_lines.append(line[5:].lstrip())
                if data_lines:
                    on_event(kind, _decode("\n".join(data_lines), "application/json"))
                return resp.status

        return self._run(send())

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return asyncio.run(coro)
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
            raise Unreachable(self.server_url, _reason(exc)) from None
        except TimeoutError:
            raise Unreachable(self.server_url, f"no answer within {self.timeout:g}s") from None
        except aiohttp.InvalidURL:
            raise CliError(f"invalid server URL {self.server_url!r}") from None
        except aiohttp.ClientError as exc:
            raise Unreachable(self.server_url, _reason(exc)) from None


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
