"""The composition root: the one place that builds adapters and plugs them into the ports."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from aiohttp import web
from attrs import frozen

from adapters.auth.authenticator import Authenticator, verifier_from_settings
from adapters.config import Settings
from adapters.http.auth import RequestAuth, install_bearer_challenge
from adapters.http.server import Limits, Routes, errors_as_json
from adapters.storage.factory import Storage, open_storage
from engine.app import Executor, FluxApp
from engine.dispatch import Dispatcher
from engine.registration import WorkflowLoader
from engine.runtime import Runtime
from engine.worker import DEFAULT_LEASE, ExecutionWorker

log = logging.getLogger("flux.auth")

EXECUTORS = ("embedded", "workers")


@frozen
class Flux:
    """Everything a running main server holds."""

    storage: Storage
    runtime: Executor
    app: FluxApp
    auth: RequestAuth


@asynccontextmanager
async def open_flux(settings: Settings, executor: str = "embedded") -> AsyncIterator[Flux]:
    """`executor`: "embedded" runs executions in this process (one server per database);
    "workers" only stores them, for `flux start worker` processes to run (any number of
    replicas)."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}: use one of {', '.join(EXECUTORS)}")
    storage = await open_storage(settings.database_url)
    try:
        loader = WorkflowLoader()
        runtime: Executor
        if executor == "workers":
            runtime = Dispatcher(storage.executions, storage.signals, loader=loader)
        else:
            load = _loader_of(storage, loader)
            runtime = Runtime(
                storage.executions, load=load, loader=loader, workers=settings.workers
            )
        auth = build_auth(settings, storage)
        try:
            await runtime.recover()
            yield Flux(
                storage,
                runtime,
                FluxApp(storage.catalog, storage.services, storage.revisions, runtime),
                auth,
            )
        finally:
            try:
                await runtime.close()
            finally:
                await auth.aclose()
    finally:
        await storage.close()


def _loader_of(storage: Storage, loader: WorkflowLoader):
    async def load(ref, version):
        found = await storage.catalog.get(ref, version)
        return None if found is None else await loader.load(found)

    return load


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


async def server_app(settings: Settings, executor: str = "embedded") -> web.Application:
    """The main server as an aiohttp application; its storage and runtime close with it."""
    resources = AsyncExitStack()
    flux = await resources.enter_async_context(open_flux(settings, executor))
    limits = Limits(settings.max_body_bytes, settings.max_upload_bytes)
    web_app = web.Application(
        middlewares=[errors_as_json],
        client_max_size=max(limits.max_body_bytes, limits.max_upload_bytes) + 64 * 1024,
    )
    Routes(flux.app, flux.auth, limits, flux.storage.ping).install(web_app)
    if settings.auth.enabled:  # without auth there is no 401 to carry a challenge
        install_bearer_challenge(web_app)

    async def close(_: web.Application) -> None:
        await resources.aclose()

    web_app.on_cleanup.append(close)
    web_app.on_startup.append(_freeze_startup_objects)
    return web_app


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
    web.run_app(
        server_app(settings, executor),
        host=settings.host,
        port=settings.port,
        print=lambda text: print(text, flush=True),
        access_log=None,
        shutdown_timeout=5,
    )


async def run_worker(
    settings: Settings,
    *,
    concurrency: int = 8,
    lease: float = DEFAULT_LEASE,
    ready: Callable[[ExecutionWorker], None] | None = None,
) -> None:
    """`flux start worker`: claim and run executions from the settings' database until
    SIGINT or SIGTERM."""
    storage = await open_storage(settings.database_url)
    try:
        loader = WorkflowLoader()
        worker = ExecutionWorker(
            storage.executions,
            storage.leases,
            storage.signals,
            load=_loader_of(storage, loader),
            loader=loader,
            concurrency=concurrency,
            threads=min(settings.workers, concurrency),
            lease=lease,
        )
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, worker.stop)
        if ready is not None:
            ready(worker)
        await worker.run()
    finally:
        await storage.close()
