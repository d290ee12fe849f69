"""The one JSON text parser of what callers send: HTTP bodies and MCP `input` arguments alike.

Bounded depth (checked by flat scans before `json.loads` recurses) and finite numbers only:
`NaN`, `Infinity` and numbers that overflow to infinity are not JSON (RFC 8259), and a caller
must not be able to make the server recurse or echo them.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from core.errors import InvalidRequest

MAX_JSON_DEPTH = 64
# A JSON string, escapes included (the unrolled form: linear, no backtracking).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_OPEN = ord("[")


def too_deep(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects nest more than `limit` levels in `raw`, found by flat scans in
    C (no recursion; brackets inside strings do not count)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # not even that many brackets: no scan needed
    brackets = _STRING.sub(b"", raw).translate(_SQUARE, _NOT_BRACKETS)
    for _ in range(limit):  # each pass drops the leaves, the innermost pairs: one level less
        brackets = brackets.replace(b"[]", b"")
        if not brackets:
            return False
    # What is left nests past the limit (any level left is one more), or is unbalanced (then
    # json.loads says what is wrong).
    depth = 0
    for byte in brackets:
        depth += 1 if byte == _OPEN else -1
        if depth > 0:
            return True
    return False


def _constant(name: str) -> Any:
    raise InvalidRequest(f"malformed JSON body: {name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidRequest(f"malformed JSON body: {text} is out of range (not a finite number)")
    return value


def loads(raw: bytes | str) -> Any:
    """The one JSON parser of request bodies: bounded depth, finite numbers only."""
    data = raw.encode() if isinstance(raw, str) else raw
    if too_deep(data):
        raise InvalidRequest(
            f"JSON body nests deeper than {MAX_JSON_DEPTH} levels", max_depth=MAX_JSON_DEPTH
        )
    try:
        return json.loads(data, parse_constant=_constant, parse_float=_finite_float)
    except RecursionError:  # never expected past the depth check; still a caller's error
        raise InvalidRequest(f"JSON body nests deeper than {MAX_JSON_DEPTH} levels") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest(f"malformed JSON body: {exc}") from None
