"""`@task`: a function whose calls are durable inside a workflow run."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from attrs import frozen

from flux._hooks import current_replayer


@frozen
class TaskOptions:
    name: str
    retry_max_attempts: int = 0  # retries after the first attempt
    retry_delay: float = 0.0  # seconds before the first retry
    retry_backoff: float = 2.0  # each later retry waits this many times longer
    timeout: float | None = None  # seconds per attempt
    fallback: Callable[..., Any] | None = (
        None  # called with the same arguments after the last failure
    )


class Task:
    """A decorated task. Calling it returns an awaitable; the call's log key is taken at call
    time, so `parallel(a(), b())` numbers calls in argument order whatever runs first."""

    def __init__(self, function: Callable[..., Any], options: TaskOptions) -> None:
        if options.retry_max_attempts < 0:
            raise ValueError("retry_max_attempts must be >= 0")
        if options.timeout is not None and options.timeout <= 0:
            raise ValueError("timeout must be > 0")
        self.function = function
        self.options = options
        self.name = options.name
        self.is_async = inspect.iscoroutinefunction(function)
        functools.update_wrapper(self, function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        replayer = current_replayer.get()
        if replayer is None:
            return self._direct(args, kwargs)
        return replayer.call_task(self, replayer.task_key(self), args, kwargs)

    async def _direct(self, args: tuple, kwargs: dict) -> Any:
        result = self.function(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        # Tasks defined as methods bind like functions.
        if instance is None:
            return self
        return functools.partial(self.__call__, instance)

    def __repr__(self) -> str:
        return f"<task {self.name}>"


class _TaskDecorator:
    """`@task` and `@task.with_options(...)`."""

    def __call__(self, function: Callable[..., Any]) -> Task:
        return Task(function, TaskOptions(name=function.__name__))

    def with_options(
        self,
        *,
        name: str | None = None,
        retry_max_attempts: int = 0,
        retry_delay: float = 0,
        retry_backoff: float = 2,
        timeout: float | None = None,
        fallback: Callable[..., Any] | None = None,
    ) -> Callable[[Callable[..., Any]], Task]:
        def decorate(function: Callable[..., Any]) -> Task:
            options = TaskOptions(
                name=name or function.__name__,
                retry_max_attempts=retry_max_attempts,
                retry_delay=retry_delay,
                retry_backoff=retry_backoff,
                timeout=timeout,
                fallback=fallback,
            )
            return Task(function, options)

        return decorate


task = _TaskDecorator()
