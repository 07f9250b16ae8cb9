"""Backpressure: per-tenant token bucket and in-flight cap, over HTTP (Redis backend, no workers) and
the algorithm itself on both backends (Redis and in-process)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from django.conf import settings

from exceptions_app.models import ExceptionRecord
from sentinai.models import Tenant
from sentinai.tenancy.scope import all_tenants_scope, tenant_scope
from tests.support.api import (
    admission,
    assert_problem,
    counts,
    ingest,
    ingest_body,
    tenant_with_key,
)

pytestmark = pytest.mark.usefixtures("fresh_caches")
db = pytest.mark.django_db(transaction=True)


def _assert_refused(response, limit: str) -> dict:
    problem = assert_problem(response, 429, "rate-limited")
    assert problem["limit"] == limit
    retry_after = response["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) >= 1, retry_after
    return problem


# --- over HTTP ------------------------------------------------------------------------------


@db
def test_over_the_rate_requests_are_429_with_retry_after_and_limit_rate():
    party = tenant_with_key("slow", rate_per_second=5, burst=5)
    responses = [party.api.post("/api/exceptions/slow", ingest_body()) for _ in range(12)]
    statuses = [r.status_code for r in responses]

    assert set(statuses) == {202, 429}, statuses
    assert statuses[:5] == [202] * 5, statuses  # the burst
    assert 429 in statuses, statuses  # 12 quick requests take less than the 1.4 s that refill 7 tokens
    for response in responses:
        if response.status_code == 429:
            problem = _assert_refused(response, "rate")
            assert "rate" in problem["detail"]
    accepted = {r.json()["exception_id"] for r in responses if r.status_code == 202}
    with tenant_scope("slow"):
        assert set(map(str, ExceptionRecord.objects.values_list("id", flat=True))) == accepted
    assert counts("slow")["events"] == len(accepted)
    assert admission.backend().in_flight("slow") == len(accepted)


@db
def test_a_refused_request_persists_nothing_and_waiting_retry_after_is_enough():
    # One token a second: the five ingests may take up to a second on a busy machine and still use up the burst.
    party = tenant_with_key("slow", rate_per_second=1, burst=5)
    for _ in range(5):
        ingest(party)
    before = counts()
    in_flight = admission.backend().in_flight("slow")
    refused = party.api.post("/api/exceptions/slow", ingest_body(source_ref="REFUSED-1"))
    _assert_refused(refused, "rate")
    assert counts() == before
    assert admission.backend().in_flight("slow") == in_flight
    with all_tenants_scope():
        assert not ExceptionRecord.objects.filter(source_ref="REFUSED-1").exists()

    time.sleep(int(refused["Retry-After"]))
    retried = party.api.post("/api/exceptions/slow", ingest_body(source_ref="REFUSED-1"))
    assert retried.status_code == 202, retried.content
    assert retried.json()["deduplicated"] is False


@db
def test_every_ingesting_endpoint_is_rate_limited():
    party = tenant_with_key("slow", rate_per_second=0.01, burst=1)
    ingest(party)
    before = counts()
    _assert_refused(party.api.post("/api/exceptions/slow", ingest_body()), "rate")
    _assert_refused(party.api.post("/api/exceptions/slow/manual", {"exception_type": "fraud_alert"}), "rate")
    _assert_refused(party.api.post("/api/exceptions/slow/batch", {"items": [ingest_body()]}), "rate")
    assert counts() == before


@db
def test_the_in_flight_cap_refuses_the_fourth_with_limit_in_flight():
    party = tenant_with_key("capped", max_in_flight=3)
    for i in range(3):
        ingest(party, source_ref=f"C-{i}")
    before = counts()
    refused = party.api.post("/api/exceptions/capped", ingest_body(source_ref="C-3"))
    problem = _assert_refused(refused, "in_flight")
    assert "3" in problem["detail"]
    assert counts() == before
    assert admission.backend().in_flight("capped") == 3

    # Closing an exception makes room once the scheduler re-counts from the database.
    with tenant_scope("capped"):
        ExceptionRecord.objects.filter(source_ref="C-0").update(status="resolved", closed_at="2025-01-01T00:00:00Z")
    assert admission.reconcile_all_tenants()["capped"] == 2
    assert party.api.post("/api/exceptions/capped", ingest_body(source_ref="C-3")).status_code == 202
    _assert_refused(party.api.post("/api/exceptions/capped", ingest_body(source_ref="C-4")), "in_flight")


@db
def test_duplicates_do_not_take_in_flight_room():
    party = tenant_with_key("capped", max_in_flight=3)
    ingest(party, source_ref="D-1")
    for _ in range(4):
        again = party.api.post("/api/exceptions/capped", ingest_body(source_ref="D-1"))
        assert again.status_code == 200 and again.json()["deduplicated"] is True
    assert admission.backend().in_flight("capped") == 1
    ingest(party, source_ref="D-2")
    ingest(party, source_ref="D-3")
    _assert_refused(party.api.post("/api/exceptions/capped", ingest_body(source_ref="D-4")), "in_flight")


@db
def test_a_batch_larger_than_the_burst_is_429_and_persists_nothing():
    party = tenant_with_key("slow", rate_per_second=5, burst=5)
    too_many = {"items": [ingest_body(source_ref=f"B-{i}") for i in range(6)]}
    problem = _assert_refused(party.api.post("/api/exceptions/slow/batch", too_many), "rate")
    assert "burst" in problem["detail"]
    assert (counts()["exceptions"], counts()["events"], counts()["outbox"]) == (0, 0, 0)
    assert admission.backend().in_flight("slow") == 0
    # The full burst in one batch is fine, and took every token.
    exactly = {"items": [ingest_body(source_ref=f"B-{i}") for i in range(5)]}
    response = party.api.post("/api/exceptions/slow/batch", exactly)
    assert response.status_code == 202 and response.json()["accepted"] == 5
    _assert_refused(party.api.post("/api/exceptions/slow", ingest_body()), "rate")


@db
def test_a_batch_without_in_flight_room_for_all_its_items_persists_none():
    party = tenant_with_key("capped", max_in_flight=3)
    ingest(party)
    batch = {"items": [ingest_body(source_ref=f"B-{i}") for i in range(3)]}
    _assert_refused(party.api.post("/api/exceptions/capped/batch", batch), "in_flight")
    assert counts("capped")["exceptions"] == 1
    assert admission.backend().in_flight("capped") == 1


@db
def test_limits_are_per_tenant():
    slow = tenant_with_key("slow", rate_per_second=0.01, burst=1)
    other = tenant_with_key("other", rate_per_second=0.01, burst=1)
    ingest(slow)
    _assert_refused(slow.api.post("/api/exceptions/slow", ingest_body()), "rate")
    assert other.api.post("/api/exceptions/other", ingest_body()).status_code == 202


# --- the algorithm, on both backends ---------------------------------------------------------


def _tenant(tenant_id: str, **limits) -> Tenant:
    """A tenant object that is never saved: admission needs only its limits."""
    return Tenant(id=tenant_id, name=tenant_id, domain_pack="finance", **limits)


UNIT_TENANTS = ("unit-rate", "unit-flight", "unit-count", "unit-reset")


@pytest.fixture(params=["local", "redis"])
def backend(request):
    if request.param == "local":
        yield admission.LocalAdmission()
        return
    redis_backend = admission.RedisAdmission(settings.REDIS_URL)
    yield redis_backend
    for tenant_id in UNIT_TENANTS:
        redis_backend.reset(tenant_id)


def test_a_backend_admits_the_burst_then_refuses_by_rate(backend):
    tenant = _tenant("unit-rate", rate_per_second=0.5, burst=3, max_in_flight=100)
    backend.reset(tenant.id)
    assert [backend.admit(tenant, 1)[0] for _ in range(3)] == ["ok"] * 3
    verdict, retry_after = backend.admit(tenant, 1)
    assert verdict == "rate"
    assert 1.5 < retry_after <= 2.0  # one token at 0.5/s, barely refilled
    assert backend.in_flight(tenant.id) == 3


def test_a_backend_refuses_by_in_flight_before_taking_tokens(backend):
    tenant = _tenant("unit-flight", rate_per_second=1000, burst=10, max_in_flight=3)
    backend.reset(tenant.id)
    assert backend.admit(tenant, 2) == ("ok", 0.0)
    assert backend.admit(tenant, 1) == ("ok", 0.0)
    assert backend.admit(tenant, 1) == ("in_flight", 3.0)
    backend.release(tenant.id, 2)
    assert backend.in_flight(tenant.id) == 1
    assert backend.admit(tenant, 3) == ("in_flight", 1.0)  # 1 + 3 > 3: all or nothing
    assert backend.admit(tenant, 2) == ("ok", 0.0)
    assert backend.in_flight(tenant.id) == 3


def test_a_backend_takes_n_tokens_for_n_items(backend):
    tenant = _tenant("unit-count", rate_per_second=0.001, burst=5, max_in_flight=100)
    backend.reset(tenant.id)
    assert backend.admit(tenant, 4)[0] == "ok"
    verdict, _ = backend.admit(tenant, 2)
    assert verdict == "rate"
    assert backend.in_flight(tenant.id) == 4  # a refusal takes no in-flight room
    assert backend.admit(tenant, 1)[0] == "ok"


def test_a_backend_release_never_goes_below_zero_and_reset_forgets(backend):
    tenant = _tenant("unit-reset", rate_per_second=0.001, burst=1, max_in_flight=1)
    backend.reset(tenant.id)
    backend.release(tenant.id, 5)
    assert backend.in_flight(tenant.id) == 0
    assert backend.admit(tenant, 1)[0] == "ok"
    assert backend.admit(tenant, 1)[0] == "in_flight"
    backend.set_in_flight(tenant.id, 0)
    assert backend.admit(tenant, 1)[0] == "rate"
    backend.reset(tenant.id)
    assert backend.admit(tenant, 1)[0] == "ok"


def test_the_local_backend_refills_at_the_rate_up_to_the_burst(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(admission, "time", SimpleNamespace(monotonic=lambda: now[0]))
    local = admission.LocalAdmission()
    tenant = _tenant("unit-refill", rate_per_second=5, burst=5, max_in_flight=1000)
    assert [local.admit(tenant, 1)[0] for _ in range(5)] == ["ok"] * 5
    assert local.admit(tenant, 1) == ("rate", pytest.approx(0.2))
    now[0] += 0.2  # one token
    assert local.admit(tenant, 1)[0] == "ok"
    assert local.admit(tenant, 1)[0] == "rate"
    now[0] += 3600  # never more than the burst
    assert [local.admit(tenant, 1)[0] for _ in range(6)] == ["ok"] * 5 + ["rate"]
    now[0] += 1.0
    assert local.admit(tenant, 5)[0] == "ok"


def test_admit_names_the_limit_with_retry_after(monkeypatch):
    local = admission.LocalAdmission()
    monkeypatch.setattr(admission, "backend", lambda: local)
    tenant = _tenant("unit-admit", rate_per_second=2, burst=2, max_in_flight=3)
    assert admission.admit(tenant, 0) is None
    assert admission.admit(tenant, 2) is None

    refusal = admission.admit(tenant, 1)
    assert refusal.limit == "rate" and 0 < refusal.retry_after <= 0.5
    assert admission.retry_after_header(refusal) == "1"

    too_big = admission.admit(tenant, 3)  # larger than the burst: never admissible in one go
    assert too_big.limit == "rate" and "burst" in too_big.detail
    assert admission.retry_after_header(too_big) == "1"

    local.set_in_flight(tenant.id, 3)
    full = admission.admit(tenant, 1)
    assert full.limit == "in_flight" and "3" in full.detail
    assert admission.retry_after_header(full) == "5"
    assert admission.retry_after_header(admission.Refusal("rate", 2.01, "x")) == "3"
