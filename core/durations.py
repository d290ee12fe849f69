"""Durations as people type them (`7d`, `12h`, `0s`) and ages in seconds as the HTTP API takes
them (`older_than=604800`): pure parsers that refuse anything else with one clear message.

Both accept ASCII digits only, with a bounded number of them, so every accepted value is a
finite, non-negative number of seconds.
"""

from __future__ import annotations

import re

from core.errors import InvalidRequest

UNITS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}

_NUMBER = r"[0-9]{1,12}(?:\.[0-9]{1,9})?"
_DURATION = re.compile(f"({_NUMBER})([smhd])")
# Seconds on the wire: the largest duration above (12 digits of days) needs 17 digits.
_SECONDS = re.compile(r"[0-9]{1,18}(?:\.[0-9]{1,9})?")


def parse_duration(text: str) -> float:
    """The seconds of `<number><unit>`: a number (`7`, `1.5`) then `s`, `m`, `h` or `d`, with
    nothing around it. `InvalidRequest` for anything else."""
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidRequest(
            f"invalid duration {text!r}: write a number followed by s, m, h or d "
            "(e.g. 30s, 15m, 12h, 7d)",
            duration=text if isinstance(text, str) else repr(text),
        )
    return float(match[1]) * UNITS[match[2]]


def format_seconds(seconds: float) -> str:
    """`seconds` as `parse_seconds` reads it back: plain decimal digits, never an exponent."""
    return f"{seconds:.6f}".rstrip("0").rstrip(".")


def parse_seconds(text: str, name: str = "older_than") -> float:
    """A non-negative number of seconds written in decimal digits (`604800`, `0.5`), as query
    parameter `name`. `InvalidRequest` naming the parameter for anything else."""
    if not isinstance(text, str) or _SECONDS.fullmatch(text) is None:
        raise InvalidRequest(
            f"query parameter {name!r} must be a number of seconds (decimal digits, "
            f"e.g. 604800), got {text!r}",
            parameter=name,
        )
    return float(text)
