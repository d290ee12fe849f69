"""Shared fixtures of the end-to-end tests: one real main server per test module, a small HTTP
client bound to it, and names that no other test of the session uses."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e import processes

_ids = itertools.count(1)


class Api:
    """Blocking JSON calls against one server; every call answers (status, body)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return processes.http("GET", self.url + path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return processes.http("POST", self.url + path, body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return processes.http("PUT", self.url + path, body, **kw)

    def delete(self, path: str, **kw: Any) -> tuple[int, Any]:
        return processes.http("DELETE", self.url + path, **kw)

    def register(self, source: str, filename: str = "wf.py") -> list[dict[str, Any]]:
        """Register a module that must be accepted; its registered refs."""
        status, body = processes.register_source(self.url, source, filename)
        assert status == 201, body
        return body["workflows"]

    def service(self, name: str, **selectors: Any) -> dict[str, Any]:
        """Create a service that must be accepted."""
        status, body = self.post("/services", {"name": name, **selectors})
        assert status == 201, body
        return body


@pytest.fixture(scope="module")
def flux_server(tmp_path_factory) -> Iterator[processes.FluxProcess]:
    """`flux start server` in a fresh working directory (fresh SQLite), shared by a module."""
    server = processes.start_server(tmp_path_factory.mktemp("server"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api(flux_server) -> Api:
    return Api(flux_server.url)


@pytest.fixture
def unique() -> Callable[[str], str]:
    """`unique("ns")` -> a service/namespace name no other test of the session uses."""
    return lambda prefix: f"{prefix}{next(_ids)}"
