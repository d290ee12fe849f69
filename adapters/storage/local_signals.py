"""Execution signals within one process: the `ExecutionSignals` port for listeners on this loop.

The memory and SQLite adapters call `changed` / `claimable` once a write has been stored (for
SQLite: once its group commit has committed), so their listeners hear the writes this process
makes, and only those. The PostgreSQL adapter uses it as the table of live listeners that its
LISTEN connection wakes.

Everything here runs on the event loop of the storage's caller: there is no lock, and a signal
is a flag set on each listener concerned.
"""

from __future__ import annotations

import asyncio

CLAIMABLE = None  # the key of listeners waiting for executions to claim, not for one execution


class LocalListener:
    def __init__(self, hub: LocalSignals, key: str | None) -> None:
        self._hub = hub
        self._key = key
        self._signalled = asyncio.Event()
        self._closed = False

    async def wait(self, timeout: float) -> bool:
        if not self._signalled.is_set():
            try:
                await asyncio.wait_for(self._signalled.wait(), timeout)
            except TimeoutError:
                return False
        # Cleared on the way out, so a signal that comes after this returns waits for the next.
        self._signalled.clear()
        return True

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._hub._forget(self._key, self)

    def signal(self) -> None:
        self._signalled.set()


class LocalSignals:
    def __init__(self) -> None:
        self._listeners: dict[str | None, set[LocalListener]] = {}

    async def listen(self, execution_id: str | None) -> LocalListener:
        listener = LocalListener(self, execution_id)
        self._listeners.setdefault(execution_id, set()).add(listener)
        return listener

    def changed(self, execution_id: str) -> None:
        """Wake the listeners of this execution."""
        self._wake(execution_id)

    def claimable(self) -> None:
        """Wake the listeners waiting for an execution to claim."""
        self._wake(CLAIMABLE)

    def wake_all(self) -> None:
        """Wake every listener: for when signals may have been missed and all should re-read."""
        for listeners in list(self._listeners.values()):
            for listener in list(listeners):
                listener.signal()

    def _wake(self, key: str | None) -> None:
        for listener in list(self._listeners.get(key, ())):
            listener.signal()

    def _forget(self, key: str | None, listener: LocalListener) -> None:
        listeners = self._listeners.get(key)
        if listeners is not None:
            listeners.discard(listener)
            if not listeners:  # an id nobody listens to any more must not stay behind
                del self._listeners[key]
