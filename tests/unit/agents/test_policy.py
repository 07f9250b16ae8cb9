"""The policy agent's decisions over in-memory state and loaded playbooks: approval guardrails, the
first matching playbook, escalation when none matches."""

from datetime import UTC, datetime

from agents.policy.logic import AGENT
from sentinai.eventstore.events import Envelope
from sentinai.models import Tenant
from sentinai.packs.domain import Pack
from sentinai.pipeline.agent import Batch

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
XID = "0b5c8a52-5a7e-4d0c-9a43-0d5c2b3e9f10"
PACK = Pack.model_validate(
    {"name": "finance", "version": 1, "exception_types": {"SettlementFail": {}}, "policies": {"approval_severities": ["critical"]}}
)  # fmt: skip
RETRY = {
    "id": "7f0c2a9e-1b3d-4e5f-8a6b-9c0d1e2f3a4b",
    "name": "retry_settlement",
    "version": 2,
    "match": {"field": "exception.exception_type", "eq": "SettlementFail"},
    "tools": {"retry_settlement", "notify"},
}
FALLBACK = {
    "id": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
    "name": "catch_all",
    "version": 1,
    "match": {},
    "tools": set(),
}


def batch(playbooks: list[dict], auto_tools: set[str], overrides: dict | None = None) -> Batch:
    tenant = Tenant(id="acme", domain_pack="finance", overrides=overrides or {})
    data = {"pack": PACK, "playbooks": playbooks, "auto_tools": auto_tools}
    return Batch(agent="policy", tenant_id="acme", tenant=tenant, now=NOW, events=[], data=data)


def requested(event_type: str = "PolicyEvaluationRequested") -> Envelope:
    return Envelope(
        event_id="5d7e0c36-8f0a-4b4e-a2f1-3f5e7c9d1a20",
        event_type=event_type,
        tenant_id="acme",
        exception_id=XID,
        sequence=5,
        causation_id=None,
        producer="triage",
        payload={},
    )


def state(severity: str = "high", **fields) -> dict:
    return {
        "status": "triaged",
        "exception_type": "SettlementFail",
        "severity": severity,
        "normalized": {},
        "payload": {},
        "closed_at": None,
        **fields,
    }


def test_the_first_matching_playbook_runs_unattended_when_all_its_tools_are_auto_approved():
    decision = AGENT.decide(batch([RETRY, FALLBACK], {"retry_settlement", "notify", "lookup"}), state(), requested())

    assert decision.exception == {"status": "in_progress"}
    assert [e.event_type for e in decision.emit] == ["PolicyEvaluationCompleted", "PlaybookMatched"]
    completed, matched = (e.payload for e in decision.emit)
    assert (completed.playbook_id, completed.playbook_name) == (RETRY["id"], "retry_settlement")
    assert completed.requires_approval is False and completed.reasons == []
    assert completed.auto_tools == ["lookup", "notify", "retry_settlement"]
    assert (matched.playbook_id, matched.playbook_name, matched.playbook_version) == (
        RETRY["id"],
        "retry_settlement",
        2,
    )
    assert matched.requires_approval is False and matched.recalculated is False


def test_playbooks_are_tried_in_the_loaded_order():
    decision = AGENT.decide(batch([FALLBACK, RETRY], set()), state(), requested())

    assert decision.emit[1].payload.playbook_name == "catch_all"
    assert decision.emit[1].payload.requires_approval is False


def test_a_playbook_using_tools_that_are_not_auto_approved_needs_approval():
    decision = AGENT.decide(batch([RETRY], {"notify"}), state(), requested())

    completed, matched = (e.payload for e in decision.emit)
    assert completed.requires_approval is True and matched.requires_approval is True
    assert completed.reasons == ["tools ['retry_settlement'] may not run without a human"]
    assert decision.exception == {"status": "in_progress"}


def test_a_severity_the_pack_names_needs_approval():
    decision = AGENT.decide(batch([RETRY], {"retry_settlement", "notify"}), state("critical"), requested())

    completed, matched = (e.payload for e in decision.emit)
    assert completed.requires_approval is True and matched.requires_approval is True
    assert completed.reasons == ["severity critical needs a human's approval"]


def test_the_tenants_approval_severities_replace_the_packs():
    overrides = {"policies": {"approval_severities": ["high"]}}
    tools = {"retry_settlement", "notify"}

    high = AGENT.decide(batch([RETRY], tools, overrides), state("high"), requested())
    critical = AGENT.decide(batch([RETRY], tools, overrides), state("critical"), requested())

    assert high.emit[0].payload.requires_approval is True
    assert high.emit[0].payload.reasons == ["severity high needs a human's approval"]
    assert critical.emit[0].payload.requires_approval is False


def test_no_matching_playbook_asks_for_escalation():
    other = {**RETRY, "match": {"field": "exception.exception_type", "eq": "FeedGap"}}

    decision = AGENT.decide(batch([other], {"notify"}), state("critical"), requested())

    assert decision.exception == {}
    assert [e.event_type for e in decision.emit] == ["PolicyEvaluationCompleted", "EscalationRequested"]
    completed, escalation = (e.payload for e in decision.emit)
    assert completed.playbook_id is None and completed.playbook_name is None
    assert completed.requires_approval is True and completed.auto_tools == ["notify"]
    reason = "no playbook of domain pack 'finance' matches this SettlementFail"
    assert completed.reasons == ["severity critical needs a human's approval", reason]
    assert escalation.reason == reason


def test_a_recalculation_is_marked_as_one():
    decision = AGENT.decide(
        batch([RETRY], {"retry_settlement", "notify"}), state(), requested("PlaybookRecalculationRequested")
    )

    assert decision.emit[1].event_type == "PlaybookMatched"
    assert decision.emit[1].payload.recalculated is True


def test_a_closed_exception_is_left_alone():
    decision = AGENT.decide(batch([RETRY], set()), state(closed_at=NOW), requested())

    assert decision.emit == [] and decision.exception == {}
