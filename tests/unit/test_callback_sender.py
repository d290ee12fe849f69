"""One attempt of the callback sender against a receiver on 127.0.0.1: what counts as delivered,
what is refused before any connection, and that nothing is followed or waited on for long."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from adapters.http.callback_sender import CheckedResolver, HttpCallbackSender, RefusedAddress
from core.callbacks import Delivery

SECRET = "whsec_" + base64.b64encode(b"unit test key, thirty-two bytes!").decode()


class Receiver:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.status = 200
        self.delay = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(request.path)
        await asyncio.sleep(self.delay)
        if request.path == "/moved":
            raise web.HTTPFound("/elsewhere")
        return web.Response(status=self.status)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, int]]:
    hook = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield hook, port
    finally:
        await runner.cleanup()


def delivery(url: str) -> Delivery:
    return Delivery("msg_1", "e1", url, '{"state":"COMPLETED"}', 0.0, 0.0)


async def send(url: str, hosts: tuple[str, ...], **options: float) -> str | None:
    sender = HttpCallbackSender(SECRET, hosts, **options)  # type: ignore[arg-type]
    try:
        return await sender.send(delivery(url))
    finally:
        await sender.close()


async def test_a_2xx_answer_is_delivered_and_others_are_not(receiver):
    hook, port = receiver
    assert await send(f"http://127.0.0.1:{port}/ok", ("127.0.0.1",)) is None
    hook.status = 204
    assert await send(f"http://127.0.0.1:{port}/ok", ("127.0.0.1",)) is None
    hook.status = 500
    assert await send(f"http://127.0.0.1:{port}/ok", ("127.0.0.1",)) == "HTTP 500"


async def test_a_redirect_is_not_followed(receiver):
    hook, port = receiver
    error = await send(f"http://127.0.0.1:{port}/moved", ("127.0.0.1",))
    assert error == "HTTP 302 (redirects are not followed)"
    assert hook.seen == ["/moved"]


async def test_a_listed_name_that_resolves_to_loopback_is_never_connected_to(receiver):
    hook, port = receiver
    error = await send(f"http://localhost:{port}/ok", ("localhost",))
    assert error is not None and "refused" in error
    assert hook.seen == []


async def test_a_host_taken_off_the_list_since_is_not_called(receiver):
    hook, port = receiver
    error = await send(f"http://127.0.0.1:{port}/ok", ("hooks.example.com",))
    assert error is not None and "allowed_hosts" in error
    assert hook.seen == []


async def test_an_attempt_is_bounded_in_time(receiver):
    hook, port = receiver
    hook.delay = 5.0
    error = await asyncio.wait_for(
        send(f"http://127.0.0.1:{port}/slow", ("127.0.0.1",), timeout=0.3), 3.0
    )
    assert error == "no answer in time"


async def test_nobody_listening_is_an_error_not_a_raise():
    error = await send("http://127.0.0.1:9/none", ("127.0.0.1",))
    assert error is not None


class _Fixed:
    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(self, host, port=0, family=0):  # type: ignore[no-untyped-def]
        return [
            {"hostname": host, "host": a, "port": port, "family": 2, "proto": 0, "flags": 0}
            for a in self.addresses
        ]

    async def close(self) -> None:
        return None


async def test_the_resolver_refuses_a_name_if_any_of_its_addresses_is_internal():
    public = CheckedResolver(_Fixed("93.184.216.34"))  # type: ignore[arg-type]
    assert [r["host"] for r in await public.resolve("hooks.test", 443)] == ["93.184.216.34"]
    mixed = CheckedResolver(_Fixed("93.184.216.34", "10.1.2.3"))  # type: ignore[arg-type]
    with pytest.raises(RefusedAddress, match="10.1.2.3"):
        await mixed.resolve("hooks.test", 443)
    with pytest.raises(RefusedAddress):
        await CheckedResolver(_Fixed()).resolve("hooks.test", 443)  # type: ignore[arg-type]
