"""The authoring SDK on its own: import paths, decorators, and plain calls outside a run."""

from __future__ import annotations

import pytest

import flux
from core.errors import InvalidName
from flux import ExecutionContext, pause, task, workflow
from flux.task import task as task_from_module
from flux.tasks import parallel, pipeline, sleep
from flux.workflow import workflow as workflow_from_module


def test_flux_import_paths_give_the_same_decorators():
    assert task is task_from_module is flux.task
    assert workflow is workflow_from_module is flux.workflow
    assert callable(flux.task.with_options) and callable(flux.workflow.with_options)
    assert pause is flux.pause and sleep is flux.sleep


def test_workflow_defaults_to_the_default_namespace_and_its_docstring():
    @workflow
    async def hello(ctx: ExecutionContext[dict]):
        """Say hello."""

    assert str(hello.ref) == "default/hello"
    assert hello.description == "Say hello."


def test_workflow_options_set_name_and_namespace():
    @workflow.with_options(name="renamed", namespace="billing")
    async def original(ctx):
        return 1

    assert str(original.ref) == "billing/renamed"


@pytest.mark.parametrize(
    ("options", "reason"),
    [({"namespace": "Bad NS"}, "namespace"), ({"name": "not-an-identifier"}, "workflow name")],
)
def test_invalid_workflow_names_are_refused_when_decorating(options, reason):
    with pytest.raises(InvalidName, match=reason):

        @workflow.with_options(**options)
        async def wf(ctx):
            return 1


async def test_tasks_outside_a_run_are_plain_calls():
    @task
    async def double(x: int) -> int:
        return x * 2

    @task.with_options(name="inc", retry_max_attempts=2)
    def increment(x: int) -> int:
        return x + 1

    assert increment.name == "inc" and increment.options.retry_max_attempts == 2
    assert await double(4) == 8
    assert await increment(4) == 5
    assert await pipeline(double, increment, input=3) == 7
    assert await parallel(double(1), double(2), increment(3)) == [2, 4, 4]


async def test_pause_outside_a_run_is_an_error():
    with pytest.raises(RuntimeError, match="inside a running workflow"):
        await pause("approval")


def test_execution_context_exposes_the_run_metadata():
    ctx = ExecutionContext({"a": 1}, "abc123", "billing", "invoice", 3)
    assert (ctx.input, ctx.execution_id, ctx.namespace, ctx.workflow, ctx.version) == (
        {"a": 1},
        "abc123",
        "billing",
        "invoice",
        3,
    )
