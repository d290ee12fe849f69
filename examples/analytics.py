"""Analytics workflows (namespace `analytics`)."""

from flux import ExecutionContext, task, workflow


@task
async def count(items: list) -> int:
    return len(items)


@workflow.with_options(namespace="analytics")
async def dashboard(ctx: ExecutionContext):
    """Summarise a list of numbers."""
    values = (ctx.input or {}).get("values", [])
    return {"count": await count(values), "sum": sum(values)}


@workflow.with_options(namespace="analytics")
async def process(ctx: ExecutionContext):
    """Process an analytics batch (collides with billing/process)."""
    return {"processed_by": "analytics", "input": ctx.input}
