"""How the HTTP adapters ask who is calling and whether they may: one small port, with an
open implementation for the default (auth off)."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from core.permissions import Principal


class RequestAuth(Protocol):
    async def principal(self, request: web.Request) -> Principal:
        """The caller; raises `Unauthenticated` when credentials are missing or bad."""

    def require(self, principal: Principal, permission: str) -> None:
        """Raises `Forbidden` naming `permission` when the principal lacks it."""


class OpenAuth:
    """Auth disabled: everyone may do everything."""

    _everyone = Principal(subject="anonymous", permissions=frozenset({"*"}))

    async def principal(self, request: web.Request) -> Principal:
        return self._everyone

    def require(self, principal: Principal, permission: str) -> None:
        return None


async def _bearer_challenge(request: web.Request, response: web.StreamResponse) -> None:
    # RFC 6750 §3: a 401 names the scheme the client should retry with; `invalid_token` only
    # when a credential was presented (a bare challenge otherwise).
    if response.status != 401 or "WWW-Authenticate" in response.headers:
        return
    challenge = 'Bearer realm="flux"'
    if request.headers.get("Authorization", "").strip():
        challenge += ', error="invalid_token"'
    response.headers["WWW-Authenticate"] = challenge


def install_bearer_challenge(app: web.Application) -> None:
    """Every 401 of `app` carries `WWW-Authenticate: Bearer ...` (one already set is kept)."""
    app.on_response_prepare.append(_bearer_challenge)
