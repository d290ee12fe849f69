"""`@workflow`: marks `async def f(ctx: ExecutionContext[T])` as a registrable workflow."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from core.deadlines import valid_timeout
from core.model import WorkflowRef
from core.names import DEFAULT_NAMESPACE, validate_namespace, validate_workflow_name


class Workflow:
    """A decorated workflow function with its ref, description (the docstring) and timeout
    (seconds an execution may run, paused time not counted; None: the server's default)."""

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        description: str | None = None,
        timeout: float | None = None,
    ) -> None:
        self.function = function
        self.timeout = valid_timeout(timeout, f"the timeout of workflow {function.__name__!r}")
        self.ref = WorkflowRef(
            validate_namespace(namespace), validate_workflow_name(name or function.__name__)
        )
        self.description = (
            description if description is not None else inspect.getdoc(function) or ""
        )
        self.__doc__ = function.__doc__
        self.__name__ = self.ref.name
        self.__module__ = function.__module__
        self.__wrapped__ = function

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def namespace(self) -> str:
        return self.ref.namespace

    def __call__(self, ctx: Any) -> Any:
        return self.function(ctx)

    def __repr__(self) -> str:
        return f"<workflow {self.ref}>"


class _WorkflowDecorator:
    """`@workflow` and `@workflow.with_options(name=..., namespace=..., timeout=...)`."""

    def __call__(self, function: Callable[..., Any]) -> Workflow:
        return Workflow(function)

    def with_options(
        self,
        *,
        name: str | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        description: str | None = None,
        timeout: float | None = None,
    ) -> Callable[[Callable[..., Any]], Workflow]:
        def decorate(function: Callable[..., Any]) -> Workflow:
            return Workflow(
                function,
                name=name,
                namespace=namespace,
                description=description,
                timeout=timeout,
            )

        return decorate


workflow = _WorkflowDecorator()
