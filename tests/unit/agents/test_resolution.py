"""The resolution agent's decisions: a playbook's outcome, or a request to escalate, becomes the
exception's terminal state (once)."""

from datetime import UTC, datetime

from agents.resolution.logic import AGENT
from sentinai.eventstore.events import Envelope
from sentinai.models import Tenant
from sentinai.pipeline.agent import Batch

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
XID = "0b5c8a52-5a7e-4d0c-9a43-0d5c2b3e9f10"
RUN = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"


def batch() -> Batch:
    tenant = Tenant(id="acme", domain_pack="finance", overrides={})
    return Batch(agent="resolution", tenant_id="acme", tenant=tenant, now=NOW, events=[])


def event(event_type: str, payload: dict) -> Envelope:
    return Envelope(
        event_id="5d7e0c36-8f0a-4b4e-a2f1-3f5e7c9d1a20",
        event_type=event_type,
        tenant_id="acme",
        exception_id=XID,
        sequence=9,
        causation_id=None,
        producer="playbook",
        payload=payload,
    )


def open_state() -> dict:
    return {"status": "in_progress", "closed_at": None, "created_at": NOW}


def test_a_playbook_that_succeeded_resolves_the_exception():
    decision = AGENT.decide(batch(), open_state(), event("PlaybookCompleted", {"run_id": RUN, "outcome": "succeeded"}))

    assert decision.exception == {"status": "resolved", "closed_at": NOW}
    assert [e.event_type for e in decision.emit] == ["ExceptionResolved"]
    assert (decision.emit[0].payload.run_id, decision.emit[0].payload.reason) == (RUN, "playbook completed")


def test_a_playbook_that_did_not_succeed_escalates_with_its_reason():
    payload = {"run_id": RUN, "outcome": "rejected", "reason": "approver said no"}

    decision = AGENT.decide(batch(), open_state(), event("PlaybookCompleted", payload))

    assert decision.exception == {"status": "escalated", "closed_at": NOW}
    assert [e.event_type for e in decision.emit] == ["ExceptionEscalated"]
    assert (decision.emit[0].payload.reason, decision.emit[0].payload.run_id) == ("approver said no", RUN)


def test_without_a_reason_the_outcome_is_the_reason():
    for outcome in ("failed", "escalated"):
        decision = AGENT.decide(batch(), open_state(), event("PlaybookCompleted", {"run_id": RUN, "outcome": outcome}))

        assert decision.exception["status"] == "escalated"
        assert decision.emit[0].payload.reason == f"playbook {outcome}"
        assert decision.emit[0].payload.run_id == RUN


def test_an_escalation_request_escalates_without_a_run():
    decision = AGENT.decide(batch(), open_state(), event("EscalationRequested", {"reason": "no playbook matches"}))

    assert decision.exception == {"status": "escalated", "closed_at": NOW}
    assert [e.event_type for e in decision.emit] == ["ExceptionEscalated"]
    assert (decision.emit[0].payload.reason, decision.emit[0].payload.run_id) == ("no playbook matches", None)


def test_an_exception_already_closed_is_left_alone():
    closed = {"status": "resolved", "closed_at": NOW, "created_at": NOW}

    decision = AGENT.decide(batch(), closed, event("EscalationRequested", {"reason": "late"}))

    assert decision.emit == [] and decision.exception == {}
