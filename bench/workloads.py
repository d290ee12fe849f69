"""Workflow modules the benchmark registers, as Python source text."""

from __future__ import annotations

BENCH_NAMESPACE = "bench"
SERVICE = "bench"

# `one` is the measured call: a single durable task that echoes its input. `hold` pauses once.
BENCH_MODULE = f'''\
"""Benchmark workflows."""

from flux import ExecutionContext, task, workflow
from flux.tasks import pause


@task
async def echo(value):
    return value


@workflow.with_options(namespace="{BENCH_NAMESPACE}")
async def one(ctx: ExecutionContext):
    """One task: echo the input."""
    return await echo(ctx.input)


@workflow.with_options(namespace="{BENCH_NAMESPACE}")
async def burn(ctx: ExecutionContext):
    """About 5 ms of pure Python (no I/O, no release of the GIL), then echo the input."""
    total = 0
    for i in range(60_000):
        total += i * i % 7
    return ctx.input


@workflow.with_options(namespace="{BENCH_NAMESPACE}")
async def hold(ctx: ExecutionContext):
    """Pause once; return the resume body."""
    decision = await pause("go")
    return {{"decision": decision}}
'''

BENCH_WORKFLOWS = 3


def filler_namespace(index: int) -> str:
    return f"fill{index:03d}"


def filler_module(namespace: str, names: list[str]) -> str:
    """A module of many small workflows in one namespace (names unique across namespaces)."""
    parts = [
        f'"""Catalog filler: {len(names)} workflows in {namespace}."""\n',
        "from flux import ExecutionContext, workflow\n",
    ]
    for name in names:
        parts.append(
            f'\n@workflow.with_options(namespace="{namespace}")\n'
            f"async def {name}(ctx: ExecutionContext):\n"
            f'    """Filler {name}."""\n'
            f"    return ctx.input\n"
        )
    return "\n".join(parts)


def filler_plan(total: int, namespaces: int) -> dict[str, list[str]]:
    """`total` workflow names spread evenly over `namespaces` filler namespaces."""
    plan: dict[str, list[str]] = {}
    for index in range(total):
        slot = index % namespaces
        plan.setdefault(filler_namespace(slot), []).append(f"w{slot:03d}_{index:05d}")
    return plan
