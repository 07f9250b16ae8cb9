"""The feedback agent's decisions: a system feedback row when an exception ends (timings, steps,
tool failures), a user feedback row when someone submits one; each also announced as an event."""

from collections import Counter
from datetime import UTC, datetime, timedelta

from agents.feedback.logic import AGENT
from exceptions_app.models import Feedback
from sentinai.eventstore.events import Envelope
from sentinai.models import Tenant
from sentinai.pipeline.agent import Batch, Upsert

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CREATED = NOW - timedelta(seconds=90)
XID = "0b5c8a52-5a7e-4d0c-9a43-0d5c2b3e9f10"
EVENT_ID = "5d7e0c36-8f0a-4b4e-a2f1-3f5e7c9d1a20"


def batch() -> Batch:
    tenant = Tenant(id="acme", domain_pack="finance", overrides={})
    data = {"steps_run": Counter({XID: 3}), "tool_failures": Counter({XID: 1})}
    return Batch(agent="feedback", tenant_id="acme", tenant=tenant, now=NOW, events=[], data=data)


def event(event_type: str, payload: dict | None = None, exception_id: str = XID) -> Envelope:
    return Envelope(
        event_id=EVENT_ID,
        event_type=event_type,
        tenant_id="acme",
        exception_id=exception_id,
        sequence=12,
        causation_id=None,
        producer="resolution",
        payload=payload or {},
    )


def ended(**fields) -> dict:
    return {
        "status": "resolved",
        "created_at": CREATED,
        "triaged_at": CREATED + timedelta(milliseconds=1500),
        "closed_at": NOW,
        **fields,
    }


def the_row(decision) -> dict:
    (record,) = decision.records
    assert isinstance(record, Upsert) and record.model is Feedback and record.unique == ("event_id",)
    return record.values


def test_an_ended_exception_gets_system_feedback_with_timings_steps_and_tool_failures():
    decision = AGENT.decide(batch(), ended(), event("ExceptionResolved"))

    assert [e.event_type for e in decision.emit] == ["FeedbackCaptured"]
    captured = decision.emit[0].payload
    assert (captured.kind, captured.outcome) == ("system", "resolved")
    assert (captured.time_to_triage_ms, captured.time_to_resolve_ms) == (1500, 90_000)
    assert (captured.steps_run, captured.tool_failures) == (3, 1)
    assert the_row(decision) == {
        "tenant_id": "acme",
        "exception_id": XID,
        "event_id": EVENT_ID,
        "kind": "system",
        "outcome": "resolved",
        "time_to_triage_ms": 1500,
        "time_to_resolve_ms": 90_000,
        "steps_run": 3,
        "tool_failures": 1,
        "rating": None,
        "comment": "",
    }
    assert decision.exception == {}


def test_an_exception_never_triaged_has_no_triage_time_and_counts_zero_for_what_it_did_not_run():
    other = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
    state = ended(status="invalid", triaged_at=None)

    decision = AGENT.decide(batch(), state, event("ExceptionValidationFailed", exception_id=other))

    captured = decision.emit[0].payload
    assert (captured.kind, captured.outcome) == ("system", "invalid")
    assert captured.time_to_triage_ms is None and captured.time_to_resolve_ms == 90_000
    assert (captured.steps_run, captured.tool_failures) == (0, 0)
    assert the_row(decision)["exception_id"] == other


def test_submitted_feedback_is_recorded_as_the_users():
    payload = {"outcome": "resolved-by-hand", "rating": 2, "comment": "slow", "submitted_by": "ops"}

    decision = AGENT.decide(batch(), ended(status="escalated"), event("FeedbackSubmitted", payload))

    captured = decision.emit[0].payload
    assert (captured.kind, captured.outcome, captured.rating, captured.comment) == (
        "user",
        "resolved-by-hand",
        2,
        "slow",
    )
    assert captured.steps_run is None and captured.time_to_resolve_ms is None
    row = the_row(decision)
    assert (row["kind"], row["outcome"], row["rating"], row["comment"]) == ("user", "resolved-by-hand", 2, "slow")
    assert row["steps_run"] is None and row["event_id"] == EVENT_ID


def test_submitted_feedback_without_an_outcome_takes_the_exceptions_status():
    decision = AGENT.decide(batch(), ended(status="escalated"), event("FeedbackSubmitted", {"rating": 5}))

    assert decision.emit[0].payload.outcome == "escalated"
    assert the_row(decision)["outcome"] == "escalated"
    assert the_row(decision)["comment"] == ""
