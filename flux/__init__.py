"""The workflow-authoring SDK: `from flux import ExecutionContext, task, workflow, pause`.

A thin facade with no I/O: the engine injects durable behaviour while a workflow runs.
"""

from flux.context import ExecutionContext
from flux.task import Task, TaskOptions
from flux.task import task as _task
from flux.tasks import parallel, pause, pipeline, sleep
from flux.workflow import Workflow
from flux.workflow import workflow as _workflow

# Importing the submodules above set `flux.task` / `flux.workflow` to the modules; the
# decorators win, as in Flux (`flux.task.with_options(...)`).
task = _task
workflow = _workflow

__all__ = [
    "ExecutionContext",
    "Task",
    "TaskOptions",
    "Workflow",
    "parallel",
    "pause",
    "pipeline",
    "sleep",
    "task",
    "workflow",
]
