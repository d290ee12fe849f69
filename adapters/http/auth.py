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
