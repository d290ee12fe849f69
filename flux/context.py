"""What a workflow function receives."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

T = TypeVar("T")


class ExecutionContext(Generic[T]):
    """`ExecutionContext[T]`: `input` is the request body converted to `T`."""

    __slots__ = ("input", "execution_id", "namespace", "workflow", "version")

    def __init__(
        self,
        input: T,
        execution_id: str = "",
        namespace: str = "default",
        workflow: str = "",
        version: int = 0,
    ) -> None:
        self.input = input
        self.execution_id = execution_id
        self.namespace = namespace
        self.workflow = workflow
        self.version = version

    @property
    def workflow_name(self) -> str:
        # Older Flux files read the name under this attribute.
        return self.workflow

    def __repr__(self) -> str:
        return (
            f"ExecutionContext(execution_id={self.execution_id!r}, "
            f"workflow='{self.namespace}/{self.workflow}', version={self.version})"
        )

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, ExecutionContext):
            return NotImplemented
        return all(getattr(self, a) == getattr(other, a) for a in self.__slots__)

    __hash__ = None  # type: ignore[assignment]
