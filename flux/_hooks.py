"""The seam between the SDK and whatever runs it.

The SDK holds no behaviour of its own: while a workflow runs, the runtime puts a replayer in
`current_replayer` and every durable call goes through it. Outside a run the contextvar is
empty and tasks are plain calls, so workflow code stays testable without a server.
"""

from __future__ import annotations

from contextvars import ContextVar

from ports.replay import Replayer

current_replayer: ContextVar[Replayer | None] = ContextVar("flux_replayer", default=None)
