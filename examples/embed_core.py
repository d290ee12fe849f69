"""The pure core used alone: resolve a service against a catalog snapshot of your own, see its
collisions, and generate its OpenAPI document and MCP tools. No server, no database, no I/O.

    python examples/embed_core.py      # prints a JSON summary
"""

from __future__ import annotations

import json

from core.mcp_tools import tools_for
from core.model import CatalogSnapshot, WorkflowInfo, WorkflowRef
from core.openapi import service_openapi
from core.resolve import find_endpoint, resolve
from core.services import new_service

AMOUNT = {
    "type": "object",
    "properties": {"amount": {"type": "number"}},
    "required": ["amount"],
}


def catalog() -> CatalogSnapshot:
    """Your own catalog: whatever registry you keep, described as WorkflowInfo values."""
    return CatalogSnapshot(
        revision=1,
        workflows=(
            WorkflowInfo(WorkflowRef("billing", "invoice"), 2, AMOUNT, "Bill a customer."),
            WorkflowInfo(WorkflowRef("billing", "refund"), 1, AMOUNT, "Refund a payment."),
            WorkflowInfo(WorkflowRef("billing", "report"), 1, None, "Billing report."),
            WorkflowInfo(WorkflowRef("analytics", "report"), 4, None, "Usage report."),
        ),
    )


def summary() -> dict:
    service = new_service(
        "finance", namespaces=["billing", "analytics"], exclusions=["billing/refund"]
    )
    resolution = resolve(service, catalog())
    invoice = find_endpoint(resolution, "invoice")
    document = service_openapi(resolution)
    return {
        "endpoints": {
            e.name: f"{e.workflow.ref} v{e.workflow.version}" for e in resolution.endpoints
        },
        "collisions": {c.name: list(c.namespaces) for c in resolution.collisions},
        "invoice_schema": invoice.workflow.input_schema,
        "openapi_paths": sorted(document["paths"]),
        "mcp_tools": [spec.name for spec in tools_for(resolution.endpoints)],
    }


if __name__ == "__main__":
    print(json.dumps(summary(), indent=2))
