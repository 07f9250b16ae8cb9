"""A fresh tenant on the shipped finance pack whose tools call a local webhook, and an HTTP client with
its key: what the browser and tracing tests report settlement failures through."""

from __future__ import annotations

import uuid

import httpx

from tests.support.factories import wait_until
from tests.support.webhook import Webhook


def create_finance_tenant(
    tenant_id: str,
    webhook: Webhook,
    *,
    rate_per_second: int = 1000,
    burst: int = 2000,
    tool_timeout_seconds: float = 1,
    **overrides,
):
    """The tenant row: the finance pack, generous limits, its tools calling the test's webhook on
    loopback (allowed explicitly: the SSRF guard refuses loopback otherwise)."""
    from sentinai.tenancy.services import tenant_create_or_update

    tenant, _ = tenant_create_or_update(
        tenant_id=tenant_id,
        domain_pack="finance",
        rate_per_second=rate_per_second,
        burst=burst,
        max_in_flight=100_000,
        overrides={
            "allowed_hosts": [f"127.0.0.1:{webhook.port}"],
            "allowed_cidrs": ["127.0.0.0/8"],
            "tools": {"webhook": {"url": webhook.url("/ok"), "timeout_seconds": tool_timeout_seconds}},
            **overrides,
        },
    )
    return tenant


class FinanceTenant:
    def __init__(self, base_url: str, webhook: Webhook, prefix: str = "t"):
        from sentinai.tenancy.services import api_key_create

        self.id = f"{prefix}-{uuid.uuid4().hex[:10]}"
        tenant = create_finance_tenant(self.id, webhook)
        _, key = api_key_create(tenant=tenant, scopes=("ingest", "read", "approve"))
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def report(self, payload: dict, headers: dict | None = None) -> str:
        body = {"source_system": "settlement-engine", "exception_type": "SETTLEMENT_FAILURE", "payload": payload}
        response = self.http.post(f"/api/exceptions/{self.id}", json=body, headers=headers or {})
        assert response.status_code == 202, response.text
        return response.json()["exception_id"]

    def get(self, exception_id: str) -> dict:
        response = self.http.get(f"/api/exceptions/{self.id}/{exception_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_for_event(self, exception_id: str, event_type: str, timeout: float = 60) -> dict:
        def seen():
            body = self.get(exception_id)
            return body if any(e["event_type"] == event_type for e in body["events"]) else None

        return wait_until(seen, timeout, interval=0.2, message=f"{exception_id} to record {event_type}")
