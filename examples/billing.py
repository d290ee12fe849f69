"""Billing workflows (namespace `billing`): register with `flux workflow register examples/billing.py`."""

from pydantic import BaseModel

from flux import ExecutionContext, task, workflow
from flux.tasks import pause


class InvoiceInput(BaseModel):
    customer_id: str
    amount: float


@task
async def price(amount: float) -> float:
    return round(amount * 1.2, 2)  # with VAT


@workflow.with_options(namespace="billing")
async def invoice(ctx: ExecutionContext[InvoiceInput]):
    """Issue an invoice for a customer; returns its id and total."""
    total = await price(ctx.input.amount)
    return {"invoice_id": f"INV-{ctx.execution_id[:6]}", "total": total}


@workflow.with_options(namespace="billing")
async def refund(ctx: ExecutionContext[dict]):
    """Refund an invoice."""
    return {"refunded": ctx.input.get("invoice_id"), "status": "refunded"}


@workflow.with_options(namespace="billing")
async def approve(ctx: ExecutionContext):
    """Wait for a human approval; completes with the body it is resumed with."""
    return await pause("approval", output={"request": ctx.input})


@workflow.with_options(namespace="billing")
async def process(ctx: ExecutionContext):
    """Process a billing batch (collides with analytics/process)."""
    return {"processed_by": "billing", "input": ctx.input}
