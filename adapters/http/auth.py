"""The bearer challenge every 401 of ours carries (RFC 6750 §3)."""

from __future__ import annotations

from aiohttp import web


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
