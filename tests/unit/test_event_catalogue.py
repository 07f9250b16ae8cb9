import pytest
from pydantic import ValidationError

from sentinai.eventstore.catalogue_doc import render
from sentinai.eventstore.events import CATALOGUE, SUBSCRIPTIONS, UnknownEventType, validate_payload
from tests.support.host import ROOT

REQUIRED = {
    "ExceptionIngested", "ExceptionNormalized", "ManualExceptionCreated", "TriageRequested", "TriageCompleted",
    "PolicyEvaluationRequested", "PolicyEvaluationCompleted", "PlaybookMatched", "StepExecutionRequested",
    "StepExecutionCompleted", "ToolExecutionRequested", "ToolExecutionCompleted", "ExceptionResolved",
    "ExceptionEscalated", "FeedbackCaptured", "RetryScheduled", "DeadLettered", "SLAImminent", "SLAExpired",
}  # fmt: skip


def test_docs_events_md_is_in_step_with_the_code():
    assert (ROOT / "docs" / "events.md").read_text() == render(), "run: python manage.py render_event_catalogue"


def test_catalogue_has_every_event_the_spec_lists_in_the_past_tense():
    assert set(CATALOGUE) >= REQUIRED
    for name, cls in CATALOGUE.items():
        assert cls.schema_version >= 1 and cls.producers and cls.__doc__, name


def test_every_subscription_names_a_catalogue_event():
    for agent, types in SUBSCRIPTIONS.items():
        assert types <= set(CATALOGUE), agent


def test_payloads_are_validated_against_their_schema():
    assert validate_payload("TriageRequested", {"exception_type": "x"}) == {"exception_type": "x"}
    with pytest.raises(ValidationError):
        validate_payload("SLAExpired", {"severity": "high"})
    with pytest.raises(ValidationError):
        validate_payload("TriageRequested", {"exception_type": "x", "unexpected": 1})
    with pytest.raises(UnknownEventType):
        validate_payload("SomethingHappened", {})
