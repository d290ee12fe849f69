"""Idempotency keys as values (SPEC §8, "Idempotency"): what a well-formed key is, whose key
it is, and the fingerprint that tells a retry from another request that reuses its key.

Pure functions, no I/O: the use case (engine/idempotent.py) claims keys through the
`ports.idempotency` port and decides what a retry is answered.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from core.errors import InvalidRequest
from core.permissions import Principal

KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
_KEY = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}")

Kind = Literal["run", "resume"]


def validate_key(value: str) -> str:
    """A key is 1 to 255 visible ASCII characters (0x21 to 0x7E): no spaces, no controls."""
    if not _KEY.fullmatch(value):
        raise InvalidRequest(
            f"the {KEY_HEADER} header must be 1 to {MAX_KEY_LENGTH} visible ASCII characters "
            "(no spaces)",
            header=KEY_HEADER,
        )
    return value


def principal_identity(principal: Principal) -> str:
    """Whose keys these are: how the caller was authenticated and who it is, as a digest (a
    subject may be any text, of any length; the digest is always storable)."""
    who = f"{principal.via}\n{principal.subject}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(who).hexdigest()


def fingerprint(
    kind: Kind,
    target: str,
    body: Any,
    *,
    execution_id: str | None = None,
    version: int | None = None,
) -> str:
    """What makes two requests the same request: run or resume, the target (`target` names
    the service endpoint or the workflow ref), the execution a resume answers, the version a
    run asks for, and the body as canonical JSON (keys sorted, no spaces, ASCII escapes), so
    two encodings of one value are the same body."""
    canonical = json.dumps(
        [kind, target, execution_id, version, body],
        sort_keys=True,
        separators=(",", ":"),
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()
