"""The seed's quick start, verbatim, against a real `flux start server`."""

from __future__ import annotations

from tests.e2e import processes


def test_quick_start_of_the_seed(api):
    status, body = processes.register_file(api.url, processes.EXAMPLES / "billing.py")
    assert status == 201, body
    assert {"ref": "billing/invoice", "version": 1} in [
        {"ref": item["ref"], "version": item["version"]} for item in body["workflows"]
    ]

    status, body = api.post("/services", {"name": "billing", "namespaces": ["billing"]})
    assert status == 201, body

    status, body = api.post(
        "/services/billing/invoice", raw=b'{"customer_id": "C-100", "amount": 99.50}'
    )
    assert status == 200, body
    # Raw output: just what the workflow returned (examples/billing.py adds 20% VAT).
    assert set(body) == {"invoice_id", "total"}
    assert body["invoice_id"].startswith("INV-")
    assert body["total"] == 119.4


def test_health_reports_the_version_and_the_database(api):
    status, body = api.get("/health")
    assert status == 200
    assert body["status"] == "ok" and body["database"] == "ok"
    assert isinstance(body["version"], str) and body["version"]
