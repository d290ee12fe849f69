"""The composition root: the one place that builds adapters and plugs them into the ports, for
each process the project starts: the main server, a `flux start worker` process and a
standalone service process. Settings come in already read (adapters/config); nothing below
reads the environment.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from aiohttp import web
from attrs import frozen

from adapters.auth.authenticator import Authenticator, verifier_from_settings
from adapters.config import Settings
from adapters.http.auth import install_bearer_challenge
from adapters.http.callback_sender import HttpCallbackSender
from adapters.http.cors import install_cors, server_call_routes
from adapters.http.errors import ACCESS_LOG, AccessLogger, errors_as_json, run_app
from adapters.http.executions import ExecutionRoutes
from adapters.http.retention import RetentionRoutes
from adapters.http.server import Limits, Routes
from adapters.storage.factory import open_storage
from core import errors
from engine.app import FluxApp
from engine.callbacks import CallbackDeliveries
from engine.calls import ServiceCalls
from engine.deadlines import DeadlineSweeper
from engine.dispatch import Dispatcher
from engine.executions import ExecutionBrowser
from engine.idempotent import IdempotentCalls
from engine.lookup import ServiceLookup
from engine.pool import LocalPool
from engine.registration import WorkflowLoader
from engine.retention import RetentionPurge
from engine.runtime import Runtime
from engine.sandbox import Sandbox
from ports.executor import Executor
from ports.storage import Storage

log = logging.getLogger("flux.auth")

EXECUTORS = ("embedded", "workers")


@frozen
class Flux:
    """Everything a running main server holds: the use cases and what they stand on."""

    storage: Storage
    app: FluxApp
    calls: ServiceCalls
    auth: Authenticator
    executor: Executor
    sandbox: Sandbox
    retention: RetentionPurge | None = None  # the purge of old executions (engine/retention.py)


@asynccontextmanager
async def open_flux(settings: Settings, executor: str = "embedded") -> AsyncIterator[Flux]:
    """`executor`: "embedded" runs executions on this machine (one server per database): in
    supervised worker processes, or in this very process with `settings.isolation` "none";
    "workers" only stores them, for `flux start worker` processes to run (any number of
    replicas)."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}: use one of {', '.join(EXECUTORS)}")
    # Exclusive: a second server on the same SQLite file stops here (`StorageInUse`, naming the
    # holder's PID) before it migrates, recovers or writes anything.
    storage = await open_storage(settings.database_url, exclusive=True)
    try:
        runner = await _executor(settings, storage, executor)
        auth = build_auth(settings, storage)
        lookup = ServiceLookup(storage.catalog, storage.services, storage.revisions)
        # Uploaded modules are read in a sandbox process, never imported here.
        sandbox = Sandbox(timeout=settings.registration_timeout)
        retention = _retention(settings, storage)
        deliveries = _callback_deliveries(settings, storage)
        sweeper = DeadlineSweeper(storage.executions)
        try:
            await sweeper.start()  # first: a deadline passed while down fails, not replays
            await runner.recover()
            retention.start()
            if deliveries is not None:  # what was owed before a restart is delivered too
                deliveries.start()
            yield Flux(
                storage,
                FluxApp(
                    lookup,
                    sandbox.inspect,
                    executions=storage.workflow_executions,
                    cancel=runner.cancel,
                    storage_health=storage.health,
                ),
                ServiceCalls(
                    lookup,
                    runner,
                    max_sync_wait=settings.max_sync_wait,
                    execution_timeout=settings.execution_timeout,
                    log=storage.executions,
                    callback_hosts=settings.callbacks.allowed_hosts
                    if settings.callbacks.enabled
                    else None,
                ),
                auth,
                runner,
                sandbox,
                retention=retention,
            )
        finally:
            try:
                await sweeper.stop()
                if deliveries is not None:
                    await deliveries.stop()
                await retention.close()
                await runner.close()
            finally:
                await sandbox.close()
                await auth.aclose()
    finally:
        await storage.close()


def _retention(settings: Settings, storage: Storage) -> RetentionPurge:
    """The purge of finished executions past `retention_days` and of expired idempotency
    keys; every replica runs one (the storage keeps concurrent purges safe)."""
    return RetentionPurge(
        storage.retention,
        storage.idempotency,
        retention_days=settings.retention_days,
        idempotency_window=settings.idempotency_window,
    )


def _callback_deliveries(settings: Settings, storage: Storage) -> CallbackDeliveries | None:
    """The sender of completion callbacks from the storage's outbox, when callbacks are
    configured; every replica runs one (each delivery is claimed by one at a time)."""
    callbacks = settings.callbacks
    if not callbacks.enabled or callbacks.secret is None:
        return None
    sender = HttpCallbackSender(callbacks.secret, callbacks.allowed_hosts)
    return CallbackDeliveries(storage.outbox, sender)


def build_auth(settings: Settings, storage: Storage) -> Authenticator:
    """Who may call the main server: everyone when auth is off; else API keys from the
    server's database and, when configured, OIDC tokens. `open_flux` closes it (the JWKS
    client session) on shutdown."""
    auth = settings.auth
    if not auth.enabled:
        return Authenticator.open()
    authenticator = Authenticator(auth, storage.api_keys, verifier_from_settings(auth))
    if authenticator.api_keys is None and authenticator.verifier is None:
        log.warning("auth is enabled with neither API keys nor OIDC: every request gets 401")
    return authenticator


FLUX: web.AppKey[Flux] = web.AppKey("flux", Flux)


async def _executor(settings: Settings, storage: Storage, executor: str) -> Executor:
    if executor == "workers":
        return Dispatcher(
            storage.executions, storage.signals, loader=WorkflowLoader(storage.catalog)
        )
    if settings.isolation == "none":
        # Trusted code only: workflow code shares this process (docs/engine.md says the risk).
        return Runtime(
            storage.executions,
            loader=WorkflowLoader(storage.catalog),
            loop_threads=settings.workers,
        )
    pool = LocalPool(storage.executions, storage.catalog, worker_command, workers=settings.workers)
    await pool.open()
    return pool


def worker_command(link_fd: int) -> list[str]:
    """The command line of one local worker process (adapters/worker_process.py), linked to
    its server by `link_fd`."""
    return [sys.executable, "-m", "adapters.cli", "start", "worker", "--link-fd", str(link_fd)]


async def server_app(
    settings: Settings, executor: str = "embedded", *, mount: str = ""
) -> web.Application:
    """The main server as an aiohttp application; its storage and runtime close with it.
    `mount`: the prefix an embedding application mounts it under (`add_subapp(mount, app)`);
    `app[FLUX]` holds the use cases, for the embedding application's own handlers."""
    resources = AsyncExitStack()
    flux = await resources.enter_async_context(open_flux(settings, executor))
    limits = Limits(settings.max_body_bytes, settings.max_upload_bytes)
    web_app = web.Application(
        middlewares=[errors_as_json],
        client_max_size=max(limits.max_body_bytes, limits.max_upload_bytes) + 64 * 1024,
    )
    if flux.retention is not None:  # first: its static path before any /executions/{id}
        RetentionRoutes(flux.retention, flux.auth).install(web_app)
    # Runs and resumes that carry an Idempotency-Key: once per key, over the storage's keys.
    idempotent = IdempotentCalls(
        flux.calls, flux.storage.idempotency, window=settings.idempotency_window
    )
    Routes(flux.app, flux.calls, flux.auth, limits, mount, idempotent=idempotent).install(web_app)
    browser = ExecutionBrowser(flux.storage.queries, flux.storage.executions)
    ExecutionRoutes(browser, flux.auth, mount, flux.storage.outbox.deliveries).install(web_app)
    install_cors(web_app, settings.cors.allowed_origins, server_call_routes(mount))
    web_app[FLUX] = flux
    if settings.auth.enabled:  # without auth there is no 401 to carry a challenge
        install_bearer_challenge(web_app)

    async def close(_: web.Application) -> None:
        await resources.aclose()

    web_app.on_shutdown.append(_answer_the_rest_after(settings.shutdown_grace, flux))
    web_app.on_cleanup.append(close)
    web_app.on_startup.append(_freeze_startup_objects)
    return web_app


def _answer_the_rest_after(grace: float, flux: Flux) -> Callable[[web.Application], Any]:
    """On a stop: the listener is closed already; registrations under way are refused at once
    (503); calls in flight get `grace` seconds to finish, then those still waiting are
    answered 503 (their executions stay on disk, RUNNING, for the next start)."""

    async def on_shutdown(_: web.Application) -> None:
        def abandon() -> None:
            flux.executor.abandon_waiters(
                lambda execution_id: errors.ShuttingDown(
                    "the server is stopping; the execution is kept and goes on after the "
                    "next start: ask for its status then",
                    execution_id=execution_id,
                )
            )

        await flux.sandbox.close()
        asyncio.get_running_loop().call_later(grace, abandon)

    return on_shutdown


async def _freeze_startup_objects(_: web.Application) -> None:
    # Everything built so far (modules, the app, caches) lives as long as the process; moving it
    # out of the collector's sight keeps each full collection to the objects of requests.
    gc.collect()
    gc.freeze()


# SQLite work happens on reader and writer threads that need the GIL again to hand their results
# back. With CPython's default 5 ms switch interval a finished batch can wait that long while the
# event loop keeps the GIL busy, and every request waiting on it waits too; 0.5 ms measured about
# 20% more sync calls per second at concurrency 16 (docs/performance.md).
GIL_SWITCH_INTERVAL = 0.0005


def serve(settings: Settings, executor: str = "embedded") -> None:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    # Warnings and errors (a worker process replaced, a run that could not be driven) reach
    # the server's standard error, and so does one access line per request (`flux.access`).
    log_to_stderr()
    run_app(
        server_app(settings, executor),
        host=settings.host,
        port=settings.port,
        on_listening=lambda url: print(
            f"======== Running on {url} ========\n(Press CTRL+C to quit)", flush=True
        ),
        access_log=ACCESS_LOG,
        access_log_class=AccessLogger,
        # The calls still waiting when the grace ends are answered (503) just after it.
        shutdown_timeout=settings.shutdown_grace + 1.5,
    )


def log_to_stderr() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    ACCESS_LOG.setLevel(logging.INFO)
    logging.getLogger("flux.retention").setLevel(logging.INFO)  # a line per purge that deleted
