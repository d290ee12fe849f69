"""Side effects shared between tests and the workflow modules they register (which load as
fresh modules, so they cannot hold a counter the test could read)."""

from __future__ import annotations

import threading
from collections import Counter

counts: Counter[str] = Counter()
flags: dict[str, bool] = {}
moments: dict[str, float] = {}  # time.monotonic() of things that happened in workflow code
_lock = threading.Lock()


def bump(name: str) -> int:
    with _lock:
        counts[name] += 1
        return counts[name]


def reset() -> None:
    with _lock:
        counts.clear()
        flags.clear()
        moments.clear()
