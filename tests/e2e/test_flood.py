"""A flood of concurrent requests against a tenant's limits: some are refused with 429, and every one
that was accepted is stored with its ExceptionIngested event and consumed by intake."""

from __future__ import annotations

import threading
import uuid

import httpx
import pytest

from sentinai.models import ExceptionEvent, ProcessedEvent
from sentinai.tenancy import admission
from sentinai.tenancy.scope import tenant_scope
from sentinai.tenancy.services import api_key_create, tenant_create_or_update
from tests.support.factories import wait_until
from tests.support.platform import Platform
from tests.support.scenarios import settlement

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def test_a_flood_is_partly_refused_and_everything_accepted_is_stored_and_consumed(live_server, tmp_path):
    tenant_id = f"flood-{uuid.uuid4().hex[:8]}"
    # A bucket of 40 that refills one token per 1,000 s: however fast or slow this machine sends the
    # 200 requests, exactly 40 are admitted.
    tenant, _ = tenant_create_or_update(
        tenant_id=tenant_id, domain_pack="finance", rate_per_second=0.001, burst=40, max_in_flight=10_000
    )
    admission.backend().reset(tenant_id)
    key = api_key_create(tenant=tenant)[1]
    statuses: list[int] = []
    accepted: list[str] = []
    retry_after: list[str] = []
    limits: set[str] = set()
    lock = threading.Lock()

    def flood(count: int):
        with httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
            for _ in range(count):
                response = http.post(
                    f"/api/exceptions/{tenant_id}",
                    json={
                        "source_system": "flood",
                        "exception_type": "SETTLEMENT_FAILURE",
                        "payload": settlement(1_000),
                    },
                )
                with lock:
                    statuses.append(response.status_code)
                    if response.status_code == 202:
                        accepted.append(response.json()["exception_id"])
                    elif response.status_code == 429:
                        retry_after.append(response.headers["Retry-After"])
                        limits.add(response.json()["limit"])

    with Platform(tmp_path):
        threads = [threading.Thread(target=flood, args=(25,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert set(statuses) == {202, 429}, statuses
        assert len(statuses) == 200
        assert statuses.count(202) == len(accepted) == 40
        assert limits == {"rate"} and all(int(v) >= 100 for v in retry_after), retry_after[:5]

        def all_taken_in():
            with tenant_scope(tenant_id):
                return ProcessedEvent.objects.filter(consumer="intake").count() == len(accepted)

        wait_until(all_taken_in, 60, interval=0.5, message="intake to consume every accepted exception")
    with tenant_scope(tenant_id):
        ingested = {
            str(i)
            for i in ExceptionEvent.objects.filter(event_type="ExceptionIngested").values_list(
                "exception_id", flat=True
            )
        }
        assert ingested == set(accepted), "exactly the accepted exceptions were stored, each with its event"
        normalized = ExceptionEvent.objects.filter(event_type="ExceptionNormalized").count()
    assert normalized == len(accepted)
