"""The workflow catalog port: uploaded workflows, by ref and version. Every adapter passes
tests/contract/test_storage.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from attrs import frozen

from core.model import CatalogSnapshot, WorkflowInfo, WorkflowRef, WorkflowVersion


@frozen
class NewWorkflow:
    """A workflow found in an uploaded module, before it gets a version number."""

    ref: WorkflowRef
    source: str
    source_hash: str
    input_schema: dict | None
    description: str
    timeout: float | None = None  # seconds an execution may run; None: the server's default


@frozen
class Registered:
    """The outcome of registering one workflow: its current version and whether it is new."""

    info: WorkflowInfo
    created: bool


class WorkflowVersions(Protocol):
    """What running a stored execution needs of the catalog: its workflow's source."""

    async def get(self, ref: WorkflowRef, version: int | None = None) -> WorkflowVersion | None:
        """One version (the latest when `version` is None), with its source."""


class Catalog(WorkflowVersions, Protocol):
    async def register(self, workflows: Sequence[NewWorkflow]) -> list[Registered]:
        """Store a new version of each workflow whose source hash differs from its latest
        version, all in one transaction. Moves the revision on if anything changed."""

    async def revision(self) -> int:
        """A number that changes on every register or delete."""

    async def snapshot(self) -> CatalogSnapshot:
        """The latest version of every workflow, with the revision it was read at."""

    async def versions(self, ref: WorkflowRef) -> list[WorkflowInfo]:
        """All stored versions of a workflow, oldest first; empty if unknown."""

    async def list(self, namespace: str | None = None) -> list[WorkflowInfo]:
        """Latest version of each workflow, sorted by ref, optionally in one namespace."""

    async def delete(self, ref: WorkflowRef, version: int | None = None) -> int:
        """Delete one version or all versions; returns how many were deleted."""
