"""Triage: infer a missing type, set severity, priority and the SLA deadline.

The classifier is an interface (`Classifier`); SENTINAI["CLASSIFIER"] names the one to use (loaded
into batch.data with the pack). The rules classifier, which applies the domain pack's classification
and severity rules, is the default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from exceptions_app import selectors
from sentinai.eventstore.events import PolicyEvaluationRequested, TriageCompleted
from sentinai.packs import domain
from sentinai.packs.conditions import exception_view
from sentinai.pipeline.agent import Agent, Decision, Emit

UNCLASSIFIED = "UNCLASSIFIED"


@dataclass(frozen=True)
class Classification:
    exception_type: str
    severity: str
    priority: int
    normalized: dict
    rules_matched: list[str] = field(default_factory=list)


class Classifier(Protocol):
    name: str

    def classify(self, pack: domain.Pack, exception_id: str, state: dict) -> Classification: ...


class RulesClassifier:
    """The pack's rules: classification (first match) when no type was given, then severity rules of
    the type (first match), priority by severity. A severity set by hand (manual exceptions) stands."""

    name = "rules"

    def classify(self, pack, exception_id, state):
        view = exception_view(exception_id, state)
        rules: list[str] = []
        exception_type = state.get("exception_type")
        normalized = state.get("normalized") or {}
        if not exception_type:
            exception_type, rules = domain.infer_type(pack, view)
            if exception_type:
                normalized = domain.normalize(pack, exception_type, state.get("payload") or {})
                view["normalized"] = normalized
        exception_type = exception_type or UNCLASSIFIED
        if state.get("severity"):
            severity, matched = state["severity"], ["given"]
        else:
            severity, matched = domain.severity_for(pack, exception_type, view)
        return Classification(exception_type, severity, pack.priority.get(severity, 4), normalized, rules + matched)


class TriageAgent(Agent):
    name = "triage"
    exception_fields = ("status", "exception_type", "severity", "normalized", "payload", "created_at", "closed_at")

    def load(self, batch, states):
        batch.data.update(pack=domain.tenant_pack(batch.tenant), **selectors.triage_settings())

    def decide(self, batch, state, event):
        if state.get("closed_at") is not None or state["status"] not in ("normalized", "received"):
            return Decision()
        pack: domain.Pack = batch.data["pack"]
        classifier: Classifier = batch.data["classifier"]
        result = classifier.classify(pack, event.exception_id, state)
        windows = {**pack.sla_seconds, **((batch.tenant.overrides or {}).get("sla_seconds") or {})}
        window = timedelta(seconds=int(windows.get(result.severity, pack.sla_seconds["low"])))
        created = state.get("created_at") or batch.now
        due = created + window
        imminent = created + window * batch.data["imminent_fraction"]
        return Decision(
            exception={
                "status": "triaged",
                "exception_type": result.exception_type,
                "severity": result.severity,
                "priority": result.priority,
                "normalized": result.normalized,
                "sla_due_at": due,
                "sla_imminent_at": imminent,
                "triaged_at": batch.now,
            },
            emit=[
                Emit.of(
                    TriageCompleted(
                        exception_type=result.exception_type,
                        severity=result.severity,
                        priority=result.priority,
                        sla_due_at=due.isoformat(),
                        classifier=classifier.name,
                        rules_matched=result.rules_matched,
                    )
                ),
                Emit.of(PolicyEvaluationRequested(exception_type=result.exception_type, severity=result.severity)),
            ],
        )


AGENT = TriageAgent()
