"""The API while one of its dependencies is unreachable, in process: the database behind a TCP proxy that
is cut, the broker and Redis at a port where nothing listens. Database down answers 503 with
Retry-After; broker down still 202 (the outbox keeps the events); Redis down fails open, with a log
line per outage and a counter (sentinai/tenancy/admission.py). The same faults on the whole topology
under load, with restarted services, are in tests/e2e/test_faults.py."""

from __future__ import annotations

import logging

import pytest
from django.db import connections

from config.celery import app as celery_app
from sentinai.eventstore import outbox
from sentinai.kernel import dependencies
from sentinai.models import Outbox
from sentinai.tenancy import admission
from sentinai.tenancy.scope import tenant_scope
from tests.support.api import assert_problem, forget_caches, ingest_body, tenant_with_key
from tests.support.metrics import counter
from tests.support.proxy import TcpProxy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_caches")]


@pytest.fixture(autouse=True)
def _fresh_dependency_state():
    dependencies.forget()
    yield
    dependencies.forget()


@pytest.fixture
def database_behind_a_proxy():
    """The default connection goes through a proxy the test can cut (the owner's stays direct)."""
    conn = connections["default"]
    real_port = conn.settings_dict["PORT"] or 5432
    conn.close()
    with TcpProxy(int(real_port)) as proxy:
        conn.settings_dict["PORT"] = str(proxy.port)
        try:
            yield proxy
        finally:
            conn.close()
            conn.settings_dict["PORT"] = real_port


def test_with_the_database_down_the_api_answers_503_with_retry_after_never_500(database_behind_a_proxy, caplog):
    party = tenant_with_key("acme")
    assert party.api.post("/api/exceptions/acme", ingest_body()).status_code == 202
    forget_caches()  # the next requests must reach the database to authenticate
    database_behind_a_proxy.cut()
    connections["default"].close()
    caplog.set_level(logging.WARNING, logger="sentinai.dependencies")
    for path, method in (("/api/exceptions/acme", "post"), ("/api/exceptions/acme", "get")):
        response = getattr(party.api, method)(path, ingest_body()) if method == "post" else party.api.get(path)
        problem = assert_problem(response, 503, "database-unavailable")
        assert response["Retry-After"] == "5", problem
    outage_lines = [r for r in caplog.records if "dependency database unreachable" in r.getMessage()]
    assert len(outage_lines) == 1, [r.getMessage() for r in caplog.records]
    database_behind_a_proxy.restore()
    connections["default"].close()
    assert party.api.post("/api/exceptions/acme", ingest_body()).status_code == 202
    assert any("dependency database reachable again" in r.getMessage() for r in caplog.records)


def test_with_the_broker_down_ingest_still_answers_202_and_the_outbox_holds_the_events(monkeypatch, purge_broker):
    party = tenant_with_key("acme")
    dead = "amqp://guest:guest@127.0.0.1:1//"
    monkeypatch.setattr(celery_app.conf, "broker_url", dead)
    monkeypatch.setattr(celery_app.conf, "broker_write_url", dead)
    monkeypatch.setattr(outbox, "_paused_until", 0.0)
    outbox.reset_broker_pools()
    try:
        responses = [party.api.post("/api/exceptions/acme", ingest_body()) for _ in range(3)]
        assert [r.status_code for r in responses] == [202, 202, 202], [r.content for r in responses]
        with tenant_scope("acme"):
            assert Outbox.objects.filter(published_at__isnull=True).count() == 3
        assert dependencies.is_down("broker")
    finally:
        monkeypatch.undo()
        outbox.reset_broker_pools()


def test_with_redis_down_admission_fails_open_with_a_metric_and_one_log_line(monkeypatch, caplog, purge_broker):
    party = tenant_with_key("acme", rate_per_second=0.05, burst=2, max_in_flight=1000)
    monkeypatch.setattr(admission, "backend", lambda: admission.RedisAdmission("redis://127.0.0.1:1/0"))
    monkeypatch.setattr(admission, "_retry_redis_at", 0.0)
    monkeypatch.setattr(admission, "_fallback", admission.LocalAdmission())
    before = counter("sentinai_admission_degraded_total", limit="rate")
    caplog.set_level(logging.WARNING, logger="sentinai.dependencies")
    statuses = [party.api.post("/api/exceptions/acme", ingest_body()).status_code for _ in range(4)]
    # The rate limit still holds, per process: burst 2, then 429 (never 500).
    assert statuses[:2] == [202, 202] and set(statuses[2:]) == {429}, statuses
    assert counter("sentinai_admission_degraded_total", limit="rate") >= before + 4
    lines = [r.getMessage() for r in caplog.records if "dependency redis unreachable" in r.getMessage()]
    assert len(lines) == 1 and "fails open" in lines[0], lines


def test_with_redis_down_the_in_flight_cap_is_not_enforced_and_releases_never_fail(monkeypatch, purge_broker):
    party = tenant_with_key("acme", max_in_flight=1)
    monkeypatch.setattr(admission, "backend", lambda: admission.RedisAdmission("redis://127.0.0.1:1/0"))
    monkeypatch.setattr(admission, "_retry_redis_at", 0.0)
    monkeypatch.setattr(admission, "_fallback", admission.LocalAdmission())
    statuses = [party.api.post("/api/exceptions/acme", ingest_body()).status_code for _ in range(3)]
    assert statuses == [202, 202, 202]
    admission.release("acme", 2)  # a worker closing exceptions while Redis is down
    assert admission.reconcile_all_tenants()["acme"] == 3
