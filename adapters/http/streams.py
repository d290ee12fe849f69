"""Server-sent event streams of an execution: the stream mode of a run or resume, and the
events route that reattaches to an existing execution (`GET .../events/{execution_id}`).

Each event carries `id: <seq>`, its sequence number in the execution's log, so a caller cut
off mid-stream reattaches with `Last-Event-ID` and gets only what it has not seen.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping

from aiohttp import web

from core.errors import InvalidRequest
from core.responses import detailed_body, event_payload, sse_message
from core.stream import StateChange, StreamItem, parse_last_event_id

EXECUTION_ID = "Flux-Execution-Id"
LAST_EVENT_ID = "Last-Event-ID"


def last_event_id_of(request: web.Request) -> int:
    """The seq a reattaching caller has seen last (0: none); a malformed one is a 400."""
    values = request.headers.getall(LAST_EVENT_ID, [])
    if len(values) > 1:
        raise InvalidRequest(
            "header 'Last-Event-ID' must be sent at most once", header=LAST_EVENT_ID
        )
    return parse_last_event_id(values[0] if values else None)


def item_message(item: StreamItem, url_prefix: str) -> str:
    if isinstance(item, StateChange):
        return sse_message("state", detailed_body(item.execution, url_prefix), item.seq)
    return sse_message(str(item.kind), event_payload(item), item.seq)


async def write_stream(
    request: web.Request,
    items: AsyncGenerator[StreamItem, None],
    url_prefix: str,
    headers: Mapping[str, str],
) -> web.StreamResponse:
    """Send `items` as server-sent events until they end (the use case ends them after the
    execution's current final state or pause, not an earlier one) or the caller leaves;
    `headers` (the execution id among them) go out before the first event."""
    stream_headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    response = web.StreamResponse(headers={**stream_headers, **headers})
    try:
        await response.prepare(request)
        async for item in items:
            try:
                await response.write(item_message(item, url_prefix).encode())
            except (ConnectionResetError, RuntimeError):
                break  # the caller went away; the execution goes on regardless
    finally:
        await items.aclose()
    await response.write_eof()
    return response
