"""Holes found when the API was tried as an attacker would: a retried tool run, /metrics, deeply
nested bodies, a tenant's pinned pack's PII rules."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from sentinai.packs import rules
from sentinai.tenancy.scope import tenant_scope
from tests.support.api import (
    TOOL,
    Api,
    assert_problem,
    counts,
    events_of,
    exception_row,
    ingest,
    ingest_body,
    make_dead_letter,
    make_tool,
    operator_of,
    outbox_rows,
    tenant_with_key,
)
from tests.support.host import ROOT
from tools_app.models import ToolExecution

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def acme():
    return tenant_with_key("acme")


# --- POST /api/tools/execute honours Idempotency-Key -------------------------------------------


def test_a_retried_tool_run_with_the_same_idempotency_key_runs_once_and_answers_the_same(acme):
    make_tool("acme")
    exception_id = ingest(acme)
    body = {"exception_id": exception_id, "tool": TOOL}
    first = acme.api.post("/api/tools/execute", body, headers={"Idempotency-Key": "run-1"})
    assert first.status_code == 202, first.content
    again = acme.api.post("/api/tools/execute", body, headers={"Idempotency-Key": "run-1"})
    assert again.status_code == 200, again.content
    assert again.json() == first.json() and again["Location"] == first["Location"]
    with tenant_scope("acme"):
        assert ToolExecution.objects.count() == 1
    requested = [e for e in events_of(exception_id) if e.event_type == "ToolExecutionRequested"]
    assert [str(e.event_id) for e in requested] == [first.json()["event_id"]]
    assert len([r for r in outbox_rows("acme") if r.queue == "tool"]) == 1

    other = acme.api.post("/api/tools/execute", body, headers={"Idempotency-Key": "run-2"})
    assert other.status_code == 202 and other.json()["execution_id"] != first.json()["execution_id"]


def test_idempotency_keys_of_tool_runs_are_per_tenant(acme):
    globex = tenant_with_key("globex")
    for party in (acme, globex):
        make_tool(party.tenant_id)
    runs = [
        party.api.post(
            "/api/tools/execute", {"exception_id": ingest(party), "tool": TOOL}, headers={"Idempotency-Key": "same"}
        )
        for party in (acme, globex)
    ]
    assert [r.status_code for r in runs] == [202, 202]
    assert runs[0].json()["execution_id"] != runs[1].json()["execution_id"]


def test_a_malformed_idempotency_key_on_a_tool_run_is_400_and_runs_nothing(acme):
    make_tool("acme")
    exception_id = ingest(acme)
    before = counts("acme")
    response = acme.api.post(
        "/api/tools/execute", {"exception_id": exception_id, "tool": TOOL}, headers={"Idempotency-Key": "x" * 201}
    )
    assert_problem(response, 400, "validation-error")
    assert counts("acme") == before


# --- /metrics --------------------------------------------------------------------------------


def _admit_once_refuse_twice(party) -> None:
    for _ in range(3):
        party.api.post(f"/api/exceptions/{party.tenant_id}", ingest_body())


def test_metrics_need_an_operate_key():
    tenant = tenant_with_key("metrics-corp")
    assert_problem(Api(None).get("/metrics"), 401, "unauthenticated")
    assert assert_problem(tenant.api.get("/metrics"), 403, "forbidden")["missing_scope"] == "operate"
    response = operator_of("ops").api.get("/metrics")
    assert response.status_code == 200 and b"sentinai_" in response.content


def test_metrics_name_no_tenant_unless_it_is_allow_listed(settings):
    secret = tenant_with_key("secret-co", rate_per_second=0.001, burst=1)
    listed = tenant_with_key("listed-co", rate_per_second=0.001, burst=1)
    settings.SENTINAI = {**settings.SENTINAI, "METRICS_TENANTS": frozenset({"listed-co"})}
    _admit_once_refuse_twice(secret)
    _admit_once_refuse_twice(listed)
    scrape = operator_of("ops").api.get("/metrics").content.decode()
    refused = [line for line in scrape.splitlines() if line.startswith("sentinai_admission_refused_total{")]
    assert any('tenant="listed-co"' in line for line in refused), refused
    assert any('tenant="-"' in line for line in refused), refused
    assert "secret-co" not in scrape


# --- deeply nested JSON ----------------------------------------------------------------------


@pytest.mark.parametrize("depth", [65, 20_000])
def test_a_deeply_nested_body_is_400_at_parse_time_and_changes_nothing(acme, depth):
    nested = '{"source_system": "erp", "payload": ' + '{"a": ' * depth + "1" + "}" * depth + "}"
    before = counts("acme")
    problem = assert_problem(acme.api.post("/api/exceptions/acme", raw=nested), 400, "malformed-request")
    assert "nest more than 64 levels" in problem["detail"]
    assert counts("acme") == before


def test_a_body_nested_within_the_bound_is_accepted(acme):
    payload = {"a": 1}
    for _ in range(60):
        payload = {"a": payload}
    response = acme.api.post("/api/exceptions/acme", ingest_body(payload=payload))
    assert response.status_code == 202, response.content


# --- PII rules of a pinned pack version ------------------------------------------------------


def test_a_tenant_pinned_to_an_older_pack_version_is_redacted_with_that_versions_pii_rules(tmp_path):
    # Version 2 of the finance pack stops treating account_holder as PII and starts treating nickname.
    call_command("load_domain_pack", str(ROOT / "domain_packs" / "finance.yaml"))
    text = (ROOT / "domain_packs" / "finance.yaml").read_text()
    v2 = text.replace("version: 1", "version: 2", 1).replace("fields: [account_holder,", "fields: [nickname,", 1)
    (tmp_path / "finance.yaml").write_text(v2)
    call_command("load_domain_pack", str(tmp_path / "finance.yaml"))
    rules.forget()
    pinned = tenant_with_key("pinned-co", overrides={"pack_version": 1})
    latest = tenant_with_key("latest-co")
    payload = {"account_holder": "Jane Doe", "nickname": "JD"}
    stored = {}
    for party in (pinned, latest):
        exception_id = ingest(party, payload=payload)
        with tenant_scope(party.tenant_id):
            stored[party.tenant_id] = exception_row(exception_id).payload
    assert stored["pinned-co"]["nickname"] == "JD" and stored["pinned-co"]["account_holder"] != "Jane Doe"
    assert stored["latest-co"]["account_holder"] == "Jane Doe" and stored["latest-co"]["nickname"] != "JD"


# --- a replay names who asked ----------------------------------------------------------------


def test_a_dead_letter_replay_records_the_operators_name(acme):
    exception_id = ingest(acme)
    (event,) = events_of(exception_id)
    letter = make_dead_letter("acme", event_id=str(event.event_id), exception_id=exception_id)
    operator = operator_of("ops", name="ops-desk:night")
    response = operator.api.post(f"/api/dead-letters/{letter.pk}/replay")
    assert response.status_code == 202, response.content
    (listed,) = [r for r in operator.api.get("/api/dead-letters").json()["results"] if r["id"] == letter.pk]
    assert (listed["status"], listed["replayed_by"]) == ("replayed", "ops-desk:night")
