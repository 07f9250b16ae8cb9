"""The intake agent's decisions over in-memory state: take an exception in once, refuse what the
tenant's pack says is invalid, normalise the rest and hand it to triage."""

from datetime import UTC, datetime

from agents.intake.logic import AGENT
from sentinai.eventstore.events import Envelope
from sentinai.models import Tenant
from sentinai.packs.domain import Pack
from sentinai.pipeline.agent import Batch

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
XID = "0b5c8a52-5a7e-4d0c-9a43-0d5c2b3e9f10"
PACK = Pack.model_validate(
    {
        "name": "finance",
        "version": 3,
        "exception_types": {
            "SettlementFail": {
                "required": {"trade_id": "string", "amount": "number"},
                "mapping": {"trade": "trade_id", "value": "amount"},
            }
        },
    }
)


def batch() -> Batch:
    tenant = Tenant(id="acme", domain_pack="finance", overrides={})
    return Batch(agent="intake", tenant_id="acme", tenant=tenant, now=NOW, events=[], data={"pack": PACK})


def ingested(exception_type: str | None) -> Envelope:
    return Envelope(
        event_id="5d7e0c36-8f0a-4b4e-a2f1-3f5e7c9d1a20",
        event_type="ExceptionIngested",
        tenant_id="acme",
        exception_id=XID,
        sequence=1,
        causation_id=None,
        producer="api",
        payload={"source_system": "ledger", "exception_type": exception_type, "payload": {}},
    )


def state(payload: dict, status: str = "received", exception_type: str | None = None) -> dict:
    return {"status": status, "payload": payload, "exception_type": exception_type, "created_at": NOW}


def test_a_valid_exception_is_normalized_and_handed_to_triage():
    decision = AGENT.decide(batch(), state({"trade_id": "T-1", "amount": 12.5}), ingested("SettlementFail"))

    assert decision.exception == {
        "status": "normalized",
        "normalized": {"trade": "T-1", "value": 12.5},
        "pack_version": 3,
    }
    assert [e.event_type for e in decision.emit] == ["ExceptionNormalized", "TriageRequested"]
    normalized, triage = (e.payload for e in decision.emit)
    assert (normalized.pack, normalized.pack_version, normalized.exception_type) == ("finance", 3, "SettlementFail")
    assert normalized.normalized == {"trade": "T-1", "value": 12.5}
    assert triage.exception_type == "SettlementFail"
    assert decision.records == []


def test_the_type_stored_on_the_exception_serves_when_the_event_names_none():
    decision = AGENT.decide(
        batch(), state({"trade_id": "T-1", "amount": 1}, exception_type="SettlementFail"), ingested(None)
    )

    assert decision.exception["normalized"] == {"trade": "T-1", "value": 1}
    assert decision.emit[1].payload.exception_type == "SettlementFail"


def test_an_invalid_exception_is_closed_as_invalid_with_the_reasons():
    decision = AGENT.decide(batch(), state({"amount": "lots"}), ingested("SettlementFail"))

    reasons = ["payload.trade_id is required for SettlementFail", "payload.amount must be a number, got str"]
    assert decision.exception == {"status": "invalid", "invalid_reasons": reasons, "pack_version": 3, "closed_at": NOW}
    assert [e.event_type for e in decision.emit] == ["ExceptionValidationFailed"]
    failed = decision.emit[0].payload
    assert (failed.pack, failed.pack_version, failed.reasons) == ("finance", 3, reasons)


def test_an_exception_already_taken_in_is_left_alone():
    decision = AGENT.decide(
        batch(), state({"trade_id": "T-1", "amount": 1}, status="normalized"), ingested("SettlementFail")
    )

    assert decision.emit == [] and decision.exception == {} and decision.records == []
