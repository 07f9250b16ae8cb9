"""The tool agent's decisions over the effects its perform handed over: how an execution ends, when
an attempt is retried, when it is dead-lettered."""

from datetime import UTC, datetime

import pytest

from agents.tool.logic import AGENT, ToolCallFailed
from sentinai.eventstore.events import Envelope
from sentinai.models import Tenant
from sentinai.pipeline.agent import Batch, PermanentError, Update
from tools_app.models import ToolExecution
from tools_app.runners import AlreadyFinished, Attempt, Outcome

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
XID = "0b5c8a52-5a7e-4d0c-9a43-0d5c2b3e9f10"
EXECUTION = "6b1f6c4e-3f0a-4c39-9a4e-0d3c5e1d7a11"
EVENT_ID = "5d7e0c36-8f0a-4b4e-a2f1-3f5e7c9d1a20"
RUN = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"


def batch(effect=None) -> Batch:
    tenant = Tenant(id="acme", domain_pack="finance", overrides={})
    effects = {} if effect is None else {EVENT_ID: effect}
    return Batch(agent="tool", tenant_id="acme", tenant=tenant, now=NOW, events=[], effects=effects)


def requested() -> Envelope:
    return Envelope(
        event_id=EVENT_ID,
        event_type="ToolExecutionRequested",
        tenant_id="acme",
        exception_id=XID,
        sequence=7,
        causation_id=None,
        producer="playbook",
        payload={"execution_id": EXECUTION, "tool": "retry_settlement", "params": {}, "run_id": RUN, "position": 2},
    )


def the_update(decision) -> dict:
    (record,) = decision.records
    assert isinstance(record, Update) and record.model is ToolExecution and record.pk == EXECUTION
    return record.values


def test_a_successful_attempt_ends_the_execution_and_reports_it():
    effect = Attempt(Outcome("succeeded", response={"resubmitted": True}), attempts=1, max_attempts=3)

    decision = AGENT.decide(batch(effect), {"status": "in_progress"}, requested())

    assert the_update(decision) == {
        "status": "succeeded",
        "response": {"resubmitted": True},
        "error": "",
        "finished_at": NOW,
        "updated_at": NOW,
    }
    assert [e.event_type for e in decision.emit] == ["ToolExecutionCompleted"]
    completed = decision.emit[0].payload
    assert (completed.execution_id, completed.tool, completed.status) == (EXECUTION, "retry_settlement", "succeeded")
    assert (completed.attempts, completed.response, completed.error) == (1, {"resubmitted": True}, "")
    assert (completed.run_id, completed.position) == (RUN, 2)
    assert decision.exception == {}


def test_a_failed_attempt_ends_the_execution_and_keeps_the_request_it_sent():
    request = {"method": "POST", "url": "https://hooks.example.com/x", "body": {}}
    effect = Attempt(Outcome("failed", response={"status_code": 400}, error="HTTP 400", request=request), 2, 3)

    decision = AGENT.decide(batch(effect), {"status": "in_progress"}, requested())

    values = the_update(decision)
    assert (values["status"], values["error"], values["request"]) == ("failed", "HTTP 400", request)
    completed = decision.emit[0].payload
    assert (completed.status, completed.error, completed.attempts) == ("failed", "HTTP 400", 2)


def test_a_retryable_failure_before_the_last_attempt_is_retried():
    effect = Attempt(Outcome("retry", error="HTTP 503"), attempts=2, max_attempts=3)

    with pytest.raises(ToolCallFailed, match=r"HTTP 503 \(attempt 2 of 3\)"):
        AGENT.decide(batch(effect), {"status": "in_progress"}, requested())


def test_a_retryable_failure_of_the_last_attempt_is_permanent():
    effect = Attempt(Outcome("retry", error="timed out"), attempts=3, max_attempts=3)

    with pytest.raises(PermanentError, match=r"timed out \(attempt 3 of 3\)"):
        AGENT.decide(batch(effect), {"status": "in_progress"}, requested())


def test_an_execution_that_does_not_exist_is_permanent():
    with pytest.raises(PermanentError, match=f"tool execution {EXECUTION} does not exist"):
        AGENT.decide(batch(), {"status": "in_progress"}, requested())


def test_an_execution_that_had_already_ended_changes_nothing():
    decision = AGENT.decide(batch(AlreadyFinished("succeeded")), {"status": "in_progress"}, requested())

    assert decision.emit == [] and decision.records == [] and decision.exception == {}


def test_a_dead_lettered_request_dead_letters_the_execution_with_its_attempts():
    effect = Attempt(Outcome("retry", error="HTTP 503"), attempts=3, max_attempts=3)

    decision = AGENT.on_dead_letter(batch(effect), {"status": "in_progress"}, requested(), "PermanentError: HTTP 503")

    assert the_update(decision) == {
        "status": "dead_lettered",
        "error": "PermanentError: HTTP 503",
        "finished_at": NOW,
        "updated_at": NOW,
    }
    completed = decision.emit[0].payload
    assert decision.emit[0].event_type == "ToolExecutionCompleted"
    assert (completed.execution_id, completed.tool, completed.status) == (
        EXECUTION,
        "retry_settlement",
        "dead_lettered",
    )
    assert (completed.attempts, completed.error) == (3, "PermanentError: HTTP 503")
    assert (completed.run_id, completed.position) == (RUN, 2)


def test_a_request_dead_lettered_without_an_attempt_counts_none():
    for effect in (None, AlreadyFinished("failed")):
        decision = AGENT.on_dead_letter(batch(effect), {}, requested(), "boom")
        assert the_update(decision)["status"] == "dead_lettered"
        assert decision.emit[0].payload.attempts == 0, effect


def test_an_attempt_not_counted_before_it_ran_is_counted_by_the_write_that_ends_it():
    started = datetime(2025, 3, 1, 11, 59, tzinfo=UTC)
    first = Attempt(Outcome("succeeded", response={}), attempts=1, max_attempts=3, recorded=False)
    later = Attempt(Outcome("failed", error="no"), attempts=3, max_attempts=3, recorded=False, started_at=started)

    values = the_update(AGENT.decide(batch(first), {}, requested()))
    assert (values["status"], values["attempts"], values["started_at"]) == ("succeeded", 1, NOW)
    values = the_update(AGENT.decide(batch(later), {}, requested()))
    assert (values["status"], values["attempts"], values["started_at"]) == ("failed", 3, started)
