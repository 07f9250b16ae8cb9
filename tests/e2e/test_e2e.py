"""End to end through the HTTP API (a live server) with real workers on RabbitMQ and PostgreSQL, the real
agents and the shipped `finance` domain pack."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from sentinai.models import Tenant as TenantRecord
from sentinai.tenancy import admission, tenants
from sentinai.tenancy.scope import tenant_scope
from sentinai.tenancy.services import api_key_create, tenant_create_or_update
from tests.support.factories import wait_until
from tests.support.finance import create_finance_tenant
from tests.support.metrics import parse as parse_metrics
from tests.support.platform import Platform
from tests.support.scenarios import TERMINAL, assert_causal_chain, is_subsequence, settlement, types
from tests.support.webhook import Webhook

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


@pytest.fixture(scope="module")
def webhook():
    with Webhook(slow_seconds=3) as hook:
        yield hook


@pytest.fixture(scope="module")
def platform(django_db_setup, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("platform")
    with Platform(log_dir, env={"LOG_FILE": str(log_dir / "sentinai.jsonl")}) as running:
        running.json_log = log_dir / "sentinai.jsonl"
        yield running


class Tenant:
    """A freshly created tenant (bound to the finance pack) and an HTTP client with its key."""

    def __init__(self, base_url: str, webhook: Webhook, **overrides):
        self.id = f"e2e-{uuid.uuid4().hex[:10]}"
        tenant = create_finance_tenant(self.id, webhook, **overrides)
        _, key = api_key_create(tenant=tenant, scopes=("ingest", "read", "approve"))
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        _, operator_key = api_key_create(tenant=tenant, scopes=("operate",))
        # /metrics is for operate keys only.
        self.operator = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {operator_key}"}, timeout=30)

    def report(self, payload: dict, exception_type: str | None = "SETTLEMENT_FAILURE", **fields) -> str:
        body = {"source_system": "settlement-engine", "payload": payload, **fields}
        if exception_type:
            body["exception_type"] = exception_type
        response = self.http.post(f"/api/exceptions/{self.id}", json=body)
        assert response.status_code == 202, response.text
        return response.json()["exception_id"]

    def get(self, exception_id: str) -> dict:
        response = self.http.get(f"/api/exceptions/{self.id}/{exception_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def playbook(self, exception_id: str) -> dict:
        return self.http.get(f"/api/exceptions/{self.id}/{exception_id}/playbook").json()

    def wait(self, exception_id: str, statuses: set[str], timeout: float = 60) -> dict:
        def reached():
            body = self.get(exception_id)
            return body if body["status"] in statuses else None

        return wait_until(reached, timeout, interval=0.2, message=f"{exception_id} to reach {statuses}")


@pytest.fixture
def tenant(live_server, webhook, platform):
    return Tenant(live_server.url, webhook)


def test_a_medium_settlement_failure_is_resolved_with_no_human(tenant):
    exception_id = tenant.report(settlement(50_000))
    body = tenant.wait(exception_id, TERMINAL)
    assert body["status"] == "resolved", body
    assert (body["exception_type"], body["severity"]) == ("SETTLEMENT_FAILURE", "medium")
    assert body["normalized"]["counterparty"] == "BANK OF EXAMPLE" and body["sla_due_at"]
    events = wait_until(lambda: (e := tenant.get(exception_id)["events"]) and "FeedbackCaptured" in types(e) and e, 30)
    assert_causal_chain(events)
    assert is_subsequence(
        [
            "ExceptionIngested", "ExceptionNormalized", "TriageRequested", "TriageCompleted", "PolicyEvaluationRequested",
            "PolicyEvaluationCompleted", "PlaybookMatched", "StepExecutionRequested", "ToolExecutionRequested",
            "ToolExecutionCompleted", "StepExecutionCompleted", "PlaybookCompleted", "ExceptionResolved", "FeedbackCaptured",
        ],
        types(events),
    ), types(events)  # fmt: skip
    assert "ApprovalDecided" not in types(events)
    view = tenant.playbook(exception_id)
    assert view["playbook"]["name"] == "settlement_retry" and view["status"] == "completed"
    steps = {s["name"]: s for s in view["steps"]}
    assert steps["check_counterparty"]["status"] == "succeeded" and steps["check_counterparty"]["tool_execution_id"]
    assert steps["desk_approval"]["status"] == "skipped"
    assert steps["retry"]["status"] == "succeeded" and steps["close"]["status"] == "succeeded"
    executions = tenant.http.get("/api/tools/executions", params={"exception_id": exception_id}).json()["results"]
    assert {e["tool"] for e in executions} >= {"lookup_counterparty", "retry_settlement"}
    # Builtins: each attempt is recorded with its outcome, in one write (requested -> succeeded).
    assert all(e["status"] == "succeeded" and e["attempts"] == 1 for e in executions), executions
    assert all(e["requested_at"] <= e["started_at"] <= e["finished_at"] for e in executions), executions
    feedback = next(e for e in events if e["event_type"] == "FeedbackCaptured")["payload"]
    assert feedback["kind"] == "system" and feedback["outcome"] == "resolved" and feedback["steps_run"] >= 3


def test_a_critical_settlement_failure_waits_for_approval_then_resolves(tenant):
    exception_id = tenant.report(settlement(2_500_000))
    body = tenant.wait(exception_id, {"awaiting_approval", *TERMINAL})
    assert (body["status"], body["severity"]) == ("awaiting_approval", "critical")
    view = tenant.playbook(exception_id)
    steps = {s["name"]: s for s in view["steps"]}
    assert view["status"] == "awaiting_approval"
    assert steps["check_counterparty"]["status"] == "succeeded"  # a tool step ran without a human
    assert steps["desk_approval"]["status"] == "awaiting_approval" and steps["retry"]["status"] == "pending"
    response = tenant.http.post(
        f"/api/exceptions/{tenant.id}/{exception_id}/approve", json={"decision": "approve", "comment": "ok"}
    )
    assert response.status_code == 202, response.text
    again = tenant.http.post(f"/api/exceptions/{tenant.id}/{exception_id}/approve", json={"decision": "approve"})
    assert again.status_code == 409
    body = tenant.wait(exception_id, TERMINAL)
    assert body["status"] == "resolved"
    assert_causal_chain(body["events"])
    assert is_subsequence(
        ["PlaybookMatched", "ApprovalDecided", "ToolExecutionRequested", "ExceptionResolved"], types(body["events"])
    )


def test_a_critical_settlement_failure_rejected_by_a_human_is_escalated(tenant):
    exception_id = tenant.report(settlement(1_000_000))
    tenant.wait(exception_id, {"awaiting_approval"})
    response = tenant.http.post(
        f"/api/exceptions/{tenant.id}/{exception_id}/approve", json={"decision": "reject", "comment": "no"}
    )
    assert response.status_code == 202
    body = tenant.wait(exception_id, TERMINAL)
    assert body["status"] == "escalated"
    assert_causal_chain(body["events"])
    assert is_subsequence(["ApprovalDecided", "PlaybookCompleted", "ExceptionEscalated"], types(body["events"]))
    assert "retry_settlement" not in {
        e["tool"]
        for e in tenant.http.get("/api/tools/executions", params={"exception_id": exception_id}).json()["results"]
    }


def test_a_high_settlement_failure_is_resolved_and_priorities_follow_severity(tenant):
    exception_id = tenant.report(settlement(150_000))
    body = tenant.wait(exception_id, TERMINAL)
    assert (body["status"], body["severity"], body["priority"]) == ("resolved", "high", 2)


def test_an_exception_invalid_for_the_pack_is_marked_invalid_with_reasons(tenant):
    exception_id = tenant.report({"amount": "a lot", "currency": "EUR"})
    body = tenant.wait(exception_id, TERMINAL)
    assert body["status"] == "invalid"
    assert any("trade_id is required" in r for r in body["invalid_reasons"])
    assert any("amount must be a number" in r for r in body["invalid_reasons"])
    assert "ExceptionValidationFailed" in types(body["events"])


def test_a_missing_type_is_inferred_by_triage(tenant):
    exception_id = tenant.report(settlement(20_000), exception_type=None)
    body = tenant.wait(exception_id, TERMINAL)
    assert (body["status"], body["exception_type"], body["severity"]) == ("resolved", "SETTLEMENT_FAILURE", "medium")


def test_pii_is_stored_and_served_redacted_everywhere(tenant):
    raw = ["trader.jane@example.com", "+1-202-555-0199", "4111 1111 1111 1111"]
    exception_id = tenant.report(settlement(10_000, note=f"call {raw[1]} or mail {raw[0]}", card=raw[2]))
    body = tenant.wait(exception_id, TERMINAL)
    served = httpx.Response(200, json=body).text + tenant.http.get(f"/api/exceptions/{tenant.id}").text
    for value in raw:
        assert value not in served
    assert "****1111" in served and "t***@example.com" in served
    from django.db import connection

    with tenant_scope(tenant.id), connection.cursor() as cursor:
        cursor.execute("SELECT payload::text FROM exception_event WHERE exception_id = %s", [exception_id])
        stored = " ".join(r[0] for r in cursor.fetchall())
        cursor.execute("SELECT payload::text, normalized::text FROM exception WHERE id = %s", [exception_id])
        stored += " ".join(cursor.fetchone())
    for value in raw:
        assert value not in stored


def test_an_http_tool_sends_the_idempotency_key_and_retries_a_timeout_with_the_same_key(live_server, webhook, platform):
    tenant = Tenant(
        live_server.url, webhook, tools={"webhook": {"url": webhook.url("/slow-once"), "timeout_seconds": 1}}
    )
    exception_id = tenant.report(settlement(5_000))
    response = tenant.http.post(
        "/api/tools/execute", json={"exception_id": exception_id, "tool": "webhook", "params": {"note": "x"}}
    )
    assert response.status_code == 202, response.text
    execution_id = response.json()["execution_id"]
    url = response.json()["status_url"]
    execution = wait_until(
        lambda: (e := tenant.http.get(url).json())["status"] in ("succeeded", "failed", "dead_lettered") and e, 60
    )
    assert execution["status"] == "succeeded" and execution["attempts"] == 2, execution
    hits = [h for h in webhook.hits("/slow-once") if h["key"] == execution_id]
    assert len(hits) == 2, "one timed-out attempt and one retry"
    assert {h["key"] for h in hits} == {execution_id}
    assert hits[0]["body"] == hits[1]["body"] and hits[0]["body"]["exception_id"] == exception_id


def test_a_tool_that_always_fails_dead_letters_its_execution_without_delaying_other_exceptions(
    live_server, webhook, platform
):
    tenant = Tenant(live_server.url, webhook, tools={"webhook": {"url": webhook.url("/fail"), "max_attempts": 3}})
    failing = tenant.report(settlement(5_000))
    response = tenant.http.post("/api/tools/execute", json={"exception_id": failing, "tool": "webhook"})
    execution_id = response.json()["execution_id"]
    started = time.monotonic()
    others = [tenant.report(settlement(1_000 + i)) for i in range(5)]
    for other in others:
        assert tenant.wait(other, TERMINAL)["status"] == "resolved"
    others_done = time.monotonic() - started
    url = response.json()["status_url"]
    execution = wait_until(
        lambda: (e := tenant.http.get(url).json())["status"] in ("succeeded", "failed", "dead_lettered") and e, 60
    )
    assert execution["status"] == "dead_lettered" and execution["attempts"] == 3, execution
    assert len([h for h in webhook.hits("/fail") if h["key"] == execution_id]) == 3
    assert others_done < 20
    letters = tenant.http.get("/api/dead-letters").json()["results"]
    assert any(letter["agent"] == "tool" and letter["exception_id"] == failing for letter in letters)
    events = types(tenant.get(failing)["events"])
    assert events.count("RetryScheduled") == 2 and "DeadLettered" in events


def test_sla_events_fire_exactly_once_on_a_short_sla(live_server, webhook, platform):
    tenant = Tenant(live_server.url, webhook, sla_seconds={"critical": 3})
    exception_id = tenant.report(settlement(3_000_000))
    tenant.wait(exception_id, {"awaiting_approval"})

    def both_fired():
        events = types(tenant.get(exception_id)["events"])
        return "SLAImminent" in events and "SLAExpired" in events and events

    events = wait_until(both_fired, 30, interval=0.5)
    time.sleep(3)  # three more scans
    events = types(tenant.get(exception_id)["events"])
    assert events.count("SLAImminent") == 1 and events.count("SLAExpired") == 1
    assert events.index("SLAImminent") < events.index("SLAExpired")


def test_editing_a_pack_never_changes_a_run_in_flight(live_server, webhook, platform):
    from pathlib import Path

    from sentinai.models import Tenant as TenantRow
    from sentinai.packs import domain

    original = (Path(__file__).resolve().parents[2] / "domain_packs" / "finance.yaml").read_text()
    v1 = original.replace("name: finance", "name: finance_edit_test", 1)
    domain.install(domain.parse(v1, "v1"))
    tenant = Tenant.__new__(Tenant)
    tenant.id = f"e2e-{uuid.uuid4().hex[:10]}"
    row, _ = tenant_create_or_update(
        tenant_id=tenant.id, domain_pack="finance_edit_test", rate_per_second=1000, burst=2000
    )
    _, key = api_key_create(tenant=row, scopes=("ingest", "read", "approve"))
    tenant.http = httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    in_flight = tenant.report(settlement(5_000_000))
    tenant.wait(in_flight, {"awaiting_approval"})
    # Version 2 drops the retry step from the settlement playbook.
    retry_line = next(line for line in v1.splitlines() if "name: retry, action: tool" in line)
    v2 = v1.replace("version: 1", "version: 2", 1).replace(retry_line + "\n", "")
    domain.install(domain.parse(v2, "v2"))
    domain.bind(TenantRow.objects.get(pk=tenant.id))

    assert (
        tenant.http.post(f"/api/exceptions/{tenant.id}/{in_flight}/approve", json={"decision": "approve"}).status_code
        == 202
    )
    assert tenant.wait(in_flight, TERMINAL)["status"] == "resolved"
    old_run = tenant.playbook(in_flight)
    assert old_run["playbook"]["version"] == 1
    assert [s["name"] for s in old_run["steps"]] == [
        "check_counterparty",
        "desk_approval",
        "retry",
        "tell_desk",
        "close",
    ]
    assert {s["name"]: s["status"] for s in old_run["steps"]}["retry"] == "succeeded"

    fresh = tenant.report(settlement(5_000_000))
    tenant.wait(fresh, {"awaiting_approval"})
    new_run = tenant.playbook(fresh)
    assert new_run["playbook"]["version"] == 2 and "retry" not in [s["name"] for s in new_run["steps"]]


# --- observability (issue: metrics, structured logs, traces) ------------------------------------


def test_the_trace_links_every_event_to_its_cause_with_per_agent_timings(tenant):
    exception_id = tenant.report(settlement(40_000))
    tenant.wait(exception_id, TERMINAL)
    events = wait_until(lambda: (e := tenant.get(exception_id)["events"]) and "FeedbackCaptured" in types(e) and e, 30)
    trace = tenant.http.get(f"/api/exceptions/{tenant.id}/{exception_id}/trace").json()
    assert [s["event_id"] for s in trace["spans"]] == [e["event_id"] for e in events]
    by_id = {s["event_id"]: s for s in trace["spans"]}
    for span in trace["spans"][1:]:
        assert span["caused_by"]["event_id"] == span["causation_id"]
        assert by_id[span["causation_id"]]["sequence"] < span["sequence"]
        assert span["after_cause_ms"] >= 0
    assert set(trace["agents"]) >= {"intake", "triage", "policy", "playbook", "tool", "resolution", "feedback"}
    assert all(t["events"] >= 1 and t["max_ms"] <= trace["duration_ms"] for t in trace["agents"].values())


def total(samples, name: str, **labels) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def test_metrics_show_counters_and_histograms_for_every_agent(tenant, live_server):
    exception_id = tenant.report(settlement(30_000))
    tenant.wait(exception_id, TERMINAL)
    time.sleep(1)  # the feedback agent closes the chain
    samples = parse_metrics(tenant.operator.get("/metrics").text)
    for agent in ("intake", "triage", "policy", "playbook", "tool", "resolution", "feedback"):
        assert total(samples, "sentinai_events_processed_total", agent=agent) > 0, agent
        assert total(samples, "sentinai_batch_seconds_count", agent=agent) > 0, agent
        assert total(samples, "sentinai_event_processing_seconds_sum", agent=agent) > 0, agent
    assert total(samples, "sentinai_end_to_end_seconds_count", outcome="resolved") > 0
    assert total(samples, "sentinai_outbox_published_total") > 0
    assert total(samples, "sentinai_http_request_seconds_count") > 0
    for queue in ("intake", "triage", "policy", "playbook", "tool", "resolution", "feedback", "sla", "scheduler"):
        assert ("sentinai_queue_depth", frozenset({("queue", queue)})) in samples
    assert (
        any(name == "sentinai_outbox_backlog" for name, _ in samples)
        or total(samples, "sentinai_outbox_published_total") > 0
    )


def test_metrics_count_failures_retries_dead_letters_and_sla_events(tenant, platform):
    samples = parse_metrics(tenant.operator.get("/metrics").text)
    # Earlier tests of this module ran a tool that always fails and a short SLA.
    assert total(samples, "sentinai_retries_total", agent="tool") >= 2
    assert total(samples, "sentinai_dead_letters_total", agent="tool", source="handler") >= 1
    assert total(samples, "sentinai_sla_events_total", kind="expired", severity="critical") >= 1


def test_worker_logs_are_json_with_the_correlation_id_and_no_raw_pii(tenant, platform):
    raw = ["jane.trader@example.com", "+1-202-555-0147", "5500 0055 5555 5559"]
    exception_id = tenant.report(settlement(10_000, contact=raw[0], phone=raw[1], card=raw[2]))
    tenant.wait(exception_id, TERMINAL)
    time.sleep(1)
    lines = platform.json_log.read_text().splitlines()
    assert lines
    records = [json.loads(line) for line in lines]  # every line parses
    for record in records:
        assert {"level", "logger", "message", "timestamp"} <= set(record)
    scoped = [r for r in records if r["logger"] in ("sentinai.tools", "sentinai.pipeline.consumer")]
    assert scoped, "per-exception work was logged"
    for record in scoped:
        # A line about one exception names it; a line about a whole batch names the batch's exceptions.
        assert record.get("exception_id") or record.get("exception_ids"), record
        assert record.get("tenant_id") and record.get("agent"), record
    notes = [r for r in records if r["logger"] == "sentinai.tools" and r.get("exception_id") == exception_id]
    assert notes and all(r.get("event_id") and r.get("attempt") for r in notes)
    text = "\n".join(lines)
    for value in raw + ["7946 0958", "trader.jane@example.com", "4111 1111 1111 1111"]:
        assert value not in text


def test_the_scheduler_recounts_in_flight_exceptions_so_a_drifted_count_stops_refusing(live_server, webhook, platform):
    body = {"source_system": "settlement-engine", "exception_type": "SETTLEMENT_FAILURE", "payload": settlement(10)}
    for _ in range(3):
        party = Tenant(live_server.url, webhook)
        TenantRecord.objects.filter(id=party.id).update(max_in_flight=2)
        tenants.forget(party.id)
        # Drift: the count says the tenant is at its cap though it has nothing open (say, a worker died
        # between committing a closing batch and releasing its count).
        admission.backend().set_in_flight(party.id, 2)
        refused = party.http.post(f"/api/exceptions/{party.id}", json=body)
        if refused.status_code != 202:
            break
        # The scheduler's re-count (every second here) ran between the drift and the request, which it
        # then admitted: drift a fresh tenant instead (this one now has an exception open).
    assert refused.status_code == 429 and refused.json()["limit"] == "in_flight", refused.text
    # The scheduler's re-count (every second in this platform) sets it back to the open exceptions: 0.
    wait_until(lambda: admission.backend().in_flight(party.id) == 0, 15, interval=0.2, message="re-count")
    assert party.http.post(f"/api/exceptions/{party.id}", json=body).status_code == 202
    assert admission.backend().in_flight(party.id) == 1
