"""Completion callbacks (`Flux-Callback-Url`): which URLs may be called, which addresses a
delivery may connect to, when an execution's change is told, and when a failed delivery is
tried again.

The rule against turning the server on its own network has two halves. When the run is asked
for, the URL's host must be one of `callbacks.allowed_hosts`, by exact name (or address
literal), nothing looser. When a delivery connects, every address the host resolves to is
checked again (`address_allowed`): a listed *name* may only lead to public (globally routable)
addresses, so a name whose DNS later points inside the network is refused; a loopback or
private address is reached only when the operator listed that very address. The sender
connects to the addresses it checked and follows no redirect.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any
from urllib.parse import SplitResult, urlsplit

from attrs import frozen

from core.errors import InvalidRequest
from core.listing import rfc3339
from core.model import JSON, Execution, ExecutionState
from core.responses import detailed_body

HEADER = "Flux-Callback-Url"
MAX_URL_LENGTH = 2048

# The states an execution is told in; each new arrival at one of them is one delivery.
NOTIFIED = (
    ExecutionState.COMPLETED,
    ExecutionState.FAILED,
    ExecutionState.CANCELLED,
    ExecutionState.PAUSED,
)

FIRST_RETRY = 1.0  # seconds after the first failed attempt; doubles after each one
LONGEST_WAIT = 3600.0  # between two attempts, at most
GIVE_UP_AFTER = 86_400.0  # seconds from the delivery's creation: no attempt starts later

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


# -- when the run is asked for -------------------------------------------------------------


def check_callback_url(url: str, allowed_hosts: tuple[str, ...] | None) -> str:
    """`url` if completion callbacks may be sent to it; else `InvalidRequest` (400) saying
    why. `allowed_hosts` None: callbacks are not configured on this server."""
    if allowed_hosts is None:
        raise InvalidRequest(
            f"{HEADER} was given but completion callbacks are not configured on this server "
            "(callbacks.secret and callbacks.allowed_hosts)"
        )
    parts = _parts(url)
    host = normal_host(parts.hostname or "")
    if host not in {normal_host(allowed) for allowed in allowed_hosts}:
        raise InvalidRequest(
            f"{HEADER}: host {host!r} is not in callbacks.allowed_hosts", host=host
        )
    return url


def _parts(url: str) -> SplitResult:
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise InvalidRequest(f"{HEADER} must be an http(s) URL of at most {MAX_URL_LENGTH} chars")
    if not url.isascii():
        raise InvalidRequest(
            f"{HEADER} must be ASCII: write an international host name in its xn-- form and "
            "percent-encode the rest"
        )
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise InvalidRequest(f"{HEADER} must not hold spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise InvalidRequest(f"{HEADER} is not a valid URL: {exc}") from None
    if port == 0:
        raise InvalidRequest(f"{HEADER} must not name port 0")
    if parts.scheme not in ("http", "https"):
        raise InvalidRequest(f"{HEADER} must use http or https, got {parts.scheme or 'none'!r}")
    if not parts.hostname:
        raise InvalidRequest(f"{HEADER} must name a host")
    if parts.username is not None or parts.password is not None:
        # Credentials in the URL would be sent to the host and kept in the outbox as text.
        raise InvalidRequest(f"{HEADER} must not carry a user name or password")
    return parts


def normal_host(host: str) -> str:
    """A host as compared: lower case, no trailing dot, an IPv6 literal without brackets and
    written the canonical way."""
    bare = host.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")
    literal = _literal(bare)
    return bare if literal is None else str(literal)


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


# -- when a delivery connects --------------------------------------------------------------


def address_allowed(host: str, address: str) -> bool:
    """May a delivery to `host` (from an allowed URL) connect to `address`, one it resolved
    to? A name: only public addresses. An address literal: that very address (the operator
    listed it), unless it is one no delivery can mean (unspecified, multicast)."""
    found = _literal(address.split("%", 1)[0])  # a scope id (fe80::1%eth0) is not the address
    if found is None:
        return False
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        found = found.ipv4_mapped
    if found.is_unspecified or found.is_multicast:
        return False
    listed = _literal(normal_host(host))
    if listed is not None:
        if isinstance(listed, ipaddress.IPv6Address) and listed.ipv4_mapped is not None:
            listed = listed.ipv4_mapped
        return found == listed
    return found.is_global


# -- what is told, and when ----------------------------------------------------------------


def notifies(state: ExecutionState, before: ExecutionState | None) -> bool:
    """Does a save that moves an execution from `before` (None: not stored yet) to `state`
    owe its callback a delivery? Only an arrival: saving PAUSED again over PAUSED is none."""
    return state in NOTIFIED and state != before


def payload(execution: Execution) -> dict[str, JSON]:
    """The detailed shape of `execution`, as the route that started it answers it (a paused
    one's `resume_url` points at that route on the main server)."""
    ref = execution.ref
    if execution.service is not None:
        prefix = f"/services/{execution.service}/{ref.name}"
    else:
        prefix = f"/workflows/{ref.namespace}/{ref.name}"
    return detailed_body(execution, prefix)


def retry_at(created_at: float, attempts: int, now: float) -> float | None:
    """When to try again after `attempts` failed attempts, the last one ending at `now`: 1 s,
    then 2, 4, 8 ... up to an hour apart; None once that would start after `GIVE_UP_AFTER`."""
    wait = min(FIRST_RETRY * 2.0 ** min(max(attempts, 1) - 1, 32), LONGEST_WAIT)
    at = now + wait
    return None if at > created_at + GIVE_UP_AFTER else at


# -- the outbox's rows ----------------------------------------------------------------------


@frozen
class Delivery:
    """One callback owed: `payload` is the JSON text sent (and signed) on every attempt, under
    the same `delivery_id` (the `webhook-id` header)."""

    delivery_id: str
    execution_id: str
    url: str
    payload: str
    created_at: float
    next_at: float
    attempts: int = 0
    delivered_at: float | None = None
    gave_up_at: float | None = None
    last_error: str | None = None

    def as_json(self) -> dict[str, Any]:
        """How a delivery is shown with its execution (`GET /executions/{id}`, `callbacks`):
        times in RFC 3339, `next_at` only while it is still owed."""
        owed = self.delivered_at is None and self.gave_up_at is None
        return {
            "id": self.delivery_id,
            "url": self.url,
            "state": "pending" if owed else "delivered" if self.gave_up_at is None else "gave_up",
            "attempts": self.attempts,
            "created_at": rfc3339(self.created_at),
            "next_at": rfc3339(self.next_at) if owed else None,
            "delivered_at": _stamp(self.delivered_at),
            "gave_up_at": _stamp(self.gave_up_at),
            "last_error": self.last_error,
        }


def _stamp(epoch: float | None) -> str | None:
    return None if epoch is None else rfc3339(epoch)


@frozen
class Attempt:
    """How one attempt ended, at `at`: `error` None is delivered; else `next_at` is when to
    try again, None having given up."""

    at: float
    error: str | None = None
    next_at: float | None = None


def attempt_outcome(delivery: Delivery, error: str | None, now: float) -> Attempt:
    """The `Attempt` to record for `delivery` once an attempt ended with `error` at `now`."""
    if error is None:
        return Attempt(now)
    return Attempt(now, error, retry_at(delivery.created_at, delivery.attempts + 1, now))


def payload_text(execution: Execution) -> str:
    """`payload(execution)` as the exact JSON text every attempt sends and signs."""
    return json.dumps(payload(execution), separators=(",", ":"))
