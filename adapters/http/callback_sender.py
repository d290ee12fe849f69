"""One attempt at a completion callback over aiohttp (`ports.callbacks.CallbackSender`).

Signed as the Standard Webhooks specification says, with its reference library
(`standardwebhooks`: the same code receivers verify with). The connection goes only to
addresses `core.callbacks.address_allowed` accepts: the resolver below checks every address a
name resolves to before aiohttp may connect to any, and aiohttp connects to exactly the
addresses it returned (no second lookup a DNS change could slip into). An address literal is
never resolved, so it is checked here before the request. No redirect is followed, no proxy
from the environment is used, and each attempt is bounded in time.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from standardwebhooks import Webhook

from adapters.version import VERSION
from core.callbacks import Delivery, address_allowed, check_callback_url
from core.errors import InvalidRequest

ATTEMPT_TIMEOUT = 10.0  # seconds one attempt may take, connection included
CONNECT_TIMEOUT = 5.0


class RefusedAddress(OSError):
    """The host resolved to an address a delivery may not connect to."""


class CheckedResolver(AbstractResolver):
    """Resolves as usual, then refuses the whole answer if any address is not allowed for the
    host (a name that also points inside the network is not called at all)."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = DefaultResolver()
        found = await self._inner.resolve(host, port, family)
        refused = sorted({r["host"] for r in found if not address_allowed(host, r["host"])})
        if refused or not found:
            raise RefusedAddress(f"{host} resolves to {', '.join(refused) or 'nothing'}: refused")
        return found

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


class HttpCallbackSender:
    def __init__(
        self,
        secret: str,
        allowed_hosts: tuple[str, ...],
        *,
        in_flight: int = 8,
        timeout: float = ATTEMPT_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._webhook = Webhook(secret)
        self._allowed_hosts = allowed_hosts
        self._in_flight = in_flight
        self._timeout = timeout
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def send(self, delivery: Delivery) -> str | None:
        try:
            # Checked again: the operator may have taken the host off the list since.
            check_callback_url(delivery.url, self._allowed_hosts)
        except InvalidRequest as refused:
            return refused.message
        host = urlsplit(delivery.url).hostname or ""
        if _is_literal(host) and not address_allowed(host, host):
            return f"{host}: refused"
        try:
            async with self._client().post(
                delivery.url,
                data=delivery.payload.encode(),
                headers=self.headers(delivery),
                allow_redirects=False,
            ) as answer:
                if 200 <= answer.status < 300:
                    return None
                if 300 <= answer.status < 400:
                    return f"HTTP {answer.status} (redirects are not followed)"
                return f"HTTP {answer.status}"
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return _describe(exc)

    def headers(self, delivery: Delivery) -> dict[str, str]:
        """The attempt's headers: a fresh timestamp each time, the same `webhook-id`."""
        now = int(self._clock())
        signature = self._webhook.sign(
            delivery.delivery_id, datetime.fromtimestamp(now, tz=UTC), delivery.payload
        )
        return {
            "Content-Type": "application/json",
            "User-Agent": f"flux-services/{VERSION}",
            "webhook-id": delivery.delivery_id,
            "webhook-timestamp": str(now),
            "webhook-signature": signature,
        }

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=CheckedResolver(), use_dns_cache=False, limit=self._in_flight
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self._timeout, connect=CONNECT_TIMEOUT),
                trust_env=False,
            )
        return self._session


def _is_literal(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "no answer in time"
    cause = exc.__cause__ if isinstance(exc.__cause__, RefusedAddress) else None
    text = str(cause or exc) or type(exc).__name__
    return text[:500]
