"""The triage agent's decisions over in-memory state: classify with the loaded classifier, set the
SLA deadline from the pack (or the tenant's override) and hand the exception to policy."""

from datetime import UTC, datetime, timedelta

from agents.triage.logic import AGENT, UNCLASSIFIED, Classification, RulesClassifier
from sentinai.eventstore.events import Envelope
from sentinai.models import Tenant
from sentinai.packs.domain import Pack
from sentinai.pipeline.agent import Batch

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CREATED = NOW - timedelta(minutes=10)
XID = "0b5c8a52-5a7e-4d0c-9a43-0d5c2b3e9f10"
PACK = Pack.model_validate(
    {
        "name": "finance",
        "version": 1,
        "exception_types": {
            "SettlementFail": {"required": {"amount": "number"}, "mapping": {"value": "amount"}},
            "FeedGap": {},
        },
        "classification": [{"type": "SettlementFail", "when": {"field": "payload.amount", "exists": True}}],
        "severity": {"SettlementFail": [{"when": {"field": "normalized.value", "gte": 1000}, "severity": "high"}]},
        "default_severity": "medium",
        "sla_seconds": {"critical": 600, "high": 3600, "medium": 7200, "low": 86400},
    }
)


def batch(pack: Pack = PACK, overrides: dict | None = None, classifier=None) -> Batch:
    tenant = Tenant(id="acme", domain_pack="finance", overrides=overrides or {})
    data = {"pack": pack, "classifier": classifier or RulesClassifier(), "imminent_fraction": 0.75}
    return Batch(agent="triage", tenant_id="acme", tenant=tenant, now=NOW, events=[], data=data)


def requested() -> Envelope:
    return Envelope(
        event_id="5d7e0c36-8f0a-4b4e-a2f1-3f5e7c9d1a20",
        event_type="TriageRequested",
        tenant_id="acme",
        exception_id=XID,
        sequence=3,
        causation_id=None,
        producer="intake",
        payload={"exception_type": "SettlementFail"},
    )


def state(**fields) -> dict:
    return {
        "status": "normalized",
        "exception_type": "SettlementFail",
        "severity": None,
        "normalized": {"value": 5000},
        "payload": {"amount": 5000},
        "created_at": CREATED,
        "closed_at": None,
        **fields,
    }


def test_a_matching_severity_rule_sets_severity_priority_and_the_sla_window():
    decision = AGENT.decide(batch(), state(), requested())

    due = CREATED + timedelta(seconds=3600)
    assert decision.exception == {
        "status": "triaged",
        "exception_type": "SettlementFail",
        "severity": "high",
        "priority": 2,
        "normalized": {"value": 5000},
        "sla_due_at": due,
        "sla_imminent_at": CREATED + timedelta(seconds=2700),
        "triaged_at": NOW,
    }
    assert [e.event_type for e in decision.emit] == ["TriageCompleted", "PolicyEvaluationRequested"]
    completed, policy = (e.payload for e in decision.emit)
    assert (completed.exception_type, completed.severity, completed.priority) == ("SettlementFail", "high", 2)
    assert completed.sla_due_at == due.isoformat()
    assert completed.classifier == "rules"
    assert completed.rules_matched == ["severity.SettlementFail[0]"]
    assert (policy.exception_type, policy.severity) == ("SettlementFail", "high")


def test_without_a_matching_severity_rule_the_pack_default_applies():
    decision = AGENT.decide(batch(), state(normalized={"value": 5}), requested())

    assert decision.exception["severity"] == "medium"
    assert decision.exception["sla_due_at"] == CREATED + timedelta(seconds=7200)
    assert decision.emit[0].payload.rules_matched == ["default_severity"]


def test_a_severity_given_by_hand_stands():
    decision = AGENT.decide(batch(), state(severity="critical"), requested())

    assert (decision.exception["severity"], decision.exception["priority"]) == ("critical", 1)
    assert decision.exception["sla_due_at"] == CREATED + timedelta(seconds=600)
    assert decision.emit[0].payload.rules_matched == ["given"]


def test_a_missing_type_is_inferred_by_the_classification_rules_and_normalized_again():
    decision = AGENT.decide(batch(), state(exception_type=None, normalized={}), requested())

    assert decision.exception["exception_type"] == "SettlementFail"
    assert decision.exception["normalized"] == {"value": 5000}
    assert decision.exception["severity"] == "high"
    assert decision.emit[0].payload.rules_matched == ["classification[0]", "severity.SettlementFail[0]"]
    assert decision.emit[1].payload.exception_type == "SettlementFail"


def test_a_type_no_rule_infers_is_unclassified():
    decision = AGENT.decide(batch(), state(exception_type=None, normalized={}, payload={"other": 1}), requested())

    assert decision.exception["exception_type"] == UNCLASSIFIED
    assert decision.exception["severity"] == "medium"
    assert decision.emit[0].payload.exception_type == UNCLASSIFIED


def test_the_tenants_sla_override_wins_over_the_pack():
    decision = AGENT.decide(batch(overrides={"sla_seconds": {"high": 60}}), state(), requested())

    assert decision.exception["sla_due_at"] == CREATED + timedelta(seconds=60)
    assert decision.exception["sla_imminent_at"] == CREATED + timedelta(seconds=45)


def test_a_severity_without_a_window_or_priority_gets_the_low_window_and_priority_4():
    sparse = PACK.model_copy(update={"sla_seconds": {"low": 900}, "priority": {"critical": 1}})

    decision = AGENT.decide(batch(pack=sparse), state(), requested())

    assert (decision.exception["severity"], decision.exception["priority"]) == ("high", 4)
    assert decision.exception["sla_due_at"] == CREATED + timedelta(seconds=900)


def test_the_window_starts_at_the_batch_time_when_the_creation_time_is_unknown():
    decision = AGENT.decide(batch(), state(created_at=None), requested())

    assert decision.exception["sla_due_at"] == NOW + timedelta(seconds=3600)


def test_the_loaded_classifier_decides_and_is_named_in_the_event():
    class Fixed:
        name = "fixed"

        def classify(self, pack, exception_id, state):
            return Classification("FeedGap", "low", 4, {"feed": "eod"}, ["model-7"])

    decision = AGENT.decide(batch(classifier=Fixed()), state(), requested())

    assert decision.exception["exception_type"] == "FeedGap"
    assert decision.exception["normalized"] == {"feed": "eod"}
    assert decision.exception["sla_due_at"] == CREATED + timedelta(seconds=86400)
    assert (decision.emit[0].payload.classifier, decision.emit[0].payload.rules_matched) == ("fixed", ["model-7"])


def test_a_received_exception_is_triaged_too():
    decision = AGENT.decide(batch(), state(status="received"), requested())

    assert decision.exception["status"] == "triaged"


def test_an_exception_already_triaged_or_closed_is_left_alone():
    for fields in ({"status": "triaged"}, {"status": "normalized", "closed_at": NOW}):
        decision = AGENT.decide(batch(), state(**fields), requested())
        assert decision.emit == [] and decision.exception == {}, fields
