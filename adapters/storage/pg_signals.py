"""Execution signals over PostgreSQL LISTEN/NOTIFY, so servers and workers on other machines
hear each other's writes at once instead of at their next poll.

Writes (adapters/storage/postgres/) notify inside their own transaction, so a notification
goes out when, and only if, the write commits:

- channel `flux_execution`, payload `<schema>:<execution id>`: that execution's state or log
  changed;
- channel `flux_claimable`, payload `<schema>`: an execution may have become claimable.

Channels are database-wide; the schema (the connection's `current_schema()`) in the payload
keeps Flux installations in different schemas of one database apart.

`PostgresSignals` holds ONE connection of its own (not from the pool: a pooled connection is
handed to other callers and LISTEN belongs to a session), opened on the first `listen`, which
waits for it (bounded) so that the first listener already hears what commits after it. It
LISTENs only on the channels this process has listeners for (a worker hears no execution's
changes, a server nothing claimable), and hands each notification to the listeners concerned
(see `local_signals`). When that connection is lost, a warning is logged once and it is reopened
in the background with a growing, bounded delay; meanwhile waits simply time out and callers
poll as they always do.
Once it is back, every listener is woken once, since notifications sent while it was down are
gone. A connection lost without a word (a network cut) is noticed by a periodic `SELECT 1`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import asyncpg

from adapters.storage.local_signals import LocalListener, LocalSignals
from adapters.storage.states import LEASABLE

log = logging.getLogger("flux.storage")

CHANGED = "flux_execution"
CLAIMABLE = "flux_claimable"

FIRST_CONNECT_WAIT = 5.0  # seconds the first `listen` waits for the connection at most
RETRY_FIRST = 0.1  # seconds before opening the connection again, doubling up to RETRY_MAX
RETRY_MAX = 5.0
CHECK_EVERY = 30.0  # seconds between checks that a quiet connection still answers
CHECK_TIMEOUT = 5.0
CLOSE_TIMEOUT = 5.0

_SCOPED_ID = "current_schema() || ':' || id"


def notifying(write: str, *, changed: bool = True) -> str:
    """`write` (an INSERT or UPDATE ... RETURNING id, state, lease_owner) as one statement that
    also notifies for each row it wrote: the execution changed (unless `changed` is False), and
    it is claimable when it is CREATED or RUNNING with no lease owner. Its status is
    `SELECT <rows written>`."""
    claimable = (
        f"CASE WHEN state IN {LEASABLE} AND lease_owner IS NULL "
        f"THEN pg_notify('{CLAIMABLE}', current_schema()) END"
    )
    notes = f"pg_notify('{CHANGED}', {_SCOPED_ID}), {claimable}" if changed else claimable
    return f"WITH written AS ({write}) SELECT {notes} FROM written"


# Takes the ids ($1, a text array) of the executions whose logs a transaction appended to.
NOTIFY_CHANGED = f"SELECT pg_notify('{CHANGED}', {_SCOPED_ID}) FROM unnest($1::text[]) AS id"


class PostgresSignals:
    """`ports.executions.ExecutionSignals` for one PostgresStorage; `close()` it with the storage.

    `connect` opens a new connection to the storage's database; `scope` is the schema that
    the storage's writes put into their payloads."""

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]], scope: str) -> None:
        self._connect = connect
        self._prefix = f"{scope}:"
        self._scope = scope
        self._listeners = LocalSignals()
        self._handlers = {CHANGED: self._on_changed, CLAIMABLE: self._on_claimable}
        self._channels: set[str] = set()  # those some listener needed; LISTENed on each connect
        self._connection: asyncpg.Connection | None = None  # while it is up
        self._talking = asyncio.Lock()  # one command at a time on the connection
        self._keeper: asyncio.Task[None] | None = None
        self._first_attempt = asyncio.Event()
        self._closed = False

    async def listen(self, execution_id: str | None) -> LocalListener:
        channel = CLAIMABLE if execution_id is None else CHANGED
        new_channel = channel not in self._channels
        self._channels.add(channel)
        if self._keeper is None and not self._closed:
            self._keeper = asyncio.get_running_loop().create_task(
                self._keep_listening(), name="flux-pg-listener"
            )
        if not self._first_attempt.is_set() and not self._closed:
            # Only until the first attempt has ended: while reconnecting later, a listener is
            # handed out at once and its waits time out until the connection is back.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._first_attempt.wait(), FIRST_CONNECT_WAIT)
        if new_channel:
            await self._listen_on(channel)
        return await self._listeners.listen(execution_id)

    async def close(self) -> None:
        self._closed = True
        self._first_attempt.set()  # a first `listen` still waiting has nothing to wait for
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            await asyncio.wait({keeper}, timeout=CLOSE_TIMEOUT + 1)

    # -- the connection ----------------------------------------------------------------------

    async def _keep_listening(self) -> None:
        delay = RETRY_FIRST
        down = False
        while not self._closed:
            try:
                connection = await self._open()
            except Exception as exc:
                if not down:
                    log.warning("cannot listen for execution signals (%r); polling meanwhile", exc)
                down = True
            else:
                if down:
                    log.info("listening for execution signals again")
                down = False
                self._first_attempt.set()
                self._listeners.wake_all()  # what was sent while nobody listened is read again
                opened = time.monotonic()
                try:
                    await self._hold(connection)
                finally:
                    self._connection = None
                    await _close_quietly(connection)
                if self._closed:
                    return
                log.warning(
                    "lost the connection listening for execution signals; polling meanwhile"
                )
                down = True
                if time.monotonic() - opened > RETRY_MAX:
                    delay = RETRY_FIRST  # it had held: not one more of a run of quick losses
            self._first_attempt.set()
            await asyncio.sleep(delay)
            delay = min(RETRY_MAX, delay * 2)

    async def _open(self) -> asyncpg.Connection:
        connection = await self._connect()
        try:
            async with self._talking:
                for channel in sorted(self._channels):
                    await connection.add_listener(channel, self._handlers[channel])
                self._connection = connection
        except BaseException:
            connection.terminate()
            raise
        return connection

    async def _listen_on(self, channel: str) -> None:
        """LISTEN on `channel` now if the connection is up; else the next connect does."""
        async with self._talking:
            connection = self._connection
            if connection is None or connection.is_closed():
                return
            try:
                await connection.add_listener(channel, self._handlers[channel])
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                # The connection is going: `_hold` notices, and the next one LISTENs on it.
                return

    async def _hold(self, connection: asyncpg.Connection) -> None:
        """Returns once `connection` is lost or this is closed."""
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _: lost.set())
        while not (self._closed or connection.is_closed()):
            try:
                await asyncio.wait_for(lost.wait(), CHECK_EVERY)
                return
            except TimeoutError:
                pass  # quiet so far: does it still answer?
            try:
                async with self._talking:
                    await connection.fetchval("SELECT 1", timeout=CHECK_TIMEOUT)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                return

    # -- notifications, on the loop ------------------------------------------------------------

    def _on_changed(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        if payload.startswith(self._prefix):
            self._listeners.changed(payload[len(self._prefix) :])

    def _on_claimable(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        if payload == self._scope:
            self._listeners.claimable()


async def _close_quietly(connection: asyncpg.Connection) -> None:
    try:
        await connection.close(timeout=CLOSE_TIMEOUT)
    except asyncio.CancelledError:
        connection.terminate()
        raise
    except Exception:  # lost already, or too slow to say goodbye
        connection.terminate()
