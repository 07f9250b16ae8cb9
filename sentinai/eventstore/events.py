"""The event catalogue: every event type, its typed, schema-versioned payload, and who consumes it.

Events are named in the past tense. A payload is a frozen pydantic model; only its JSON form is
stored and crosses the broker. `SUBSCRIPTIONS` is the one declaration of which agent consumes which
event type; the event store writes an outbox row per subscribed agent queue, and nothing else routes
events. docs/events.md is generated from this module and a test keeps the two in step.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict

from sentinai.kernel import ids

# --- payload base ------------------------------------------------------------------------------


class EventPayload(BaseModel):
    """Base of every event payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1
    producers: ClassVar[tuple[str, ...]]


CATALOGUE: dict[str, type[EventPayload]] = {}


def event(*, producers: tuple[str, ...], schema_version: int = 1):
    """Register a payload class in the catalogue under its class name."""

    def register(cls: type[EventPayload]) -> type[EventPayload]:
        cls.event_type = cls.__name__
        cls.schema_version = schema_version
        cls.producers = producers
        CATALOGUE[cls.__name__] = cls
        return cls

    return register


# The one definition of severity, lowest first: the catalogue's payloads, the domain packs and the
# exception row's choices all use it.
Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: tuple[str, ...] = get_args(Severity)

# --- inbound ---------------------------------------------------------------------------------


@event(producers=("api",))
class ExceptionIngested(EventPayload):
    """An exception was accepted through the command API (payload already redacted)."""

    source_system: str
    source_ref: str | None = None
    exception_type: str | None = None
    occurred_at: str | None = None
    payload: dict[str, Any]


@event(producers=("api",))
class ManualExceptionCreated(EventPayload):
    """An operator raised an exception by hand."""

    source_system: str
    source_ref: str | None = None
    exception_type: str | None = None
    severity: Severity | None = None
    summary: str = ""
    created_by: str = ""
    actor: str | None = None
    payload: dict[str, Any]


@event(producers=("intake",))
class ExceptionNormalized(EventPayload):
    """Intake validated the exception against the tenant's domain pack and mapped it to the canonical
    model."""

    pack: str
    pack_version: int
    exception_type: str | None = None
    normalized: dict[str, Any]


@event(producers=("intake",))
class ExceptionValidationFailed(EventPayload):
    """The exception is invalid for the tenant's domain pack; it is marked `invalid` with reasons."""

    pack: str
    pack_version: int
    reasons: list[str]


@event(producers=("intake",))
class TriageRequested(EventPayload):
    """Intake hands a normalized exception to triage."""

    exception_type: str | None = None


@event(producers=("triage",))
class TriageCompleted(EventPayload):
    """Triage classified the exception: type, severity, priority and SLA deadline."""

    exception_type: str
    severity: Severity
    priority: int
    sla_due_at: str | None = None
    classifier: str
    rules_matched: list[str] = []


@event(producers=("triage",))
class PolicyEvaluationRequested(EventPayload):
    """Triage asks policy to apply the tenant's guardrails and match a playbook."""

    exception_type: str
    severity: Severity


@event(producers=("api",))
class PlaybookRecalculationRequested(EventPayload):
    """A user asked to re-match the playbook of an exception."""

    requested_by: str = ""
    reason: str = ""
    actor: str | None = None


@event(producers=("policy",))
class PolicyEvaluationCompleted(EventPayload):
    """Policy evaluated guardrails: whether a human must approve, which tools may run unattended."""

    playbook_id: str | None
    playbook_name: str | None
    requires_approval: bool
    auto_tools: list[str] = []
    reasons: list[str] = []


@event(producers=("policy",))
class PlaybookMatched(EventPayload):
    """A playbook (a fixed version of it) was chosen for the exception."""

    playbook_id: str
    playbook_name: str
    playbook_version: int
    requires_approval: bool
    recalculated: bool = False


@event(producers=("policy", "playbook"))
class EscalationRequested(EventPayload):
    """No automated path applies (no playbook matched, or a guardrail forbids one)."""

    reason: str


# --- playbook and tools ----------------------------------------------------------------------


@event(producers=("playbook",))
class StepExecutionRequested(EventPayload):
    """The playbook starts a step."""

    run_id: str
    position: int
    name: str
    action: str
    params: dict[str, Any] = {}
    tool_execution_id: str | None = None


@event(producers=("playbook",))
class StepExecutionCompleted(EventPayload):
    """A playbook step finished (succeeded, failed, rejected or skipped)."""

    run_id: str
    position: int
    name: str
    action: str
    status: str
    output: dict[str, Any] = {}


@event(producers=("api",))
class ApprovalDecided(EventPayload):
    """A human approved or rejected the step awaiting approval."""

    decision: Literal["approve", "reject"]
    comment: str = ""
    decided_by: str = ""
    actor: str | None = None
    run_id: str
    position: int


@event(producers=("playbook", "api"))
class ToolExecutionRequested(EventPayload):
    """A tool action is requested; its execution id is the idempotency key of every attempt."""

    execution_id: str
    tool: str
    params: dict[str, Any] = {}
    run_id: str | None = None
    position: int | None = None
    actor: str | None = None


@event(producers=("tool",))
class ToolExecutionCompleted(EventPayload):
    """A tool execution reached its final state."""

    execution_id: str
    tool: str
    status: Literal["succeeded", "failed", "dead_lettered"]
    attempts: int
    response: Any = None
    error: str = ""
    run_id: str | None = None
    position: int | None = None


@event(producers=("sla",))
class PlaybookTimerElapsed(EventPayload):
    """A `wait` step's time is up (the scheduler's timer scan)."""

    run_id: str
    position: int


@event(producers=("playbook",))
class PlaybookCompleted(EventPayload):
    """A playbook run ended; resolution turns the outcome into the exception's terminal state."""

    run_id: str
    outcome: Literal["succeeded", "failed", "rejected", "escalated"]
    reason: str = ""
    steps_run: int = 0


# --- outcome ---------------------------------------------------------------------------------


@event(producers=("resolution",))
class ExceptionResolved(EventPayload):
    """The exception is resolved."""

    run_id: str | None = None
    reason: str = ""


@event(producers=("resolution",))
class ExceptionEscalated(EventPayload):
    """The exception is handed to humans."""

    reason: str
    run_id: str | None = None


@event(producers=("api",))
class FeedbackSubmitted(EventPayload):
    """A user gave feedback on an exception's handling."""

    rating: int | None = None
    outcome: str = ""
    comment: str = ""
    submitted_by: str = ""
    actor: str | None = None


@event(producers=("feedback",))
class FeedbackCaptured(EventPayload):
    """Feedback recorded for learning: timings, steps, tool failures, outcome (system or user)."""

    kind: Literal["system", "user"]
    outcome: str
    time_to_triage_ms: int | None = None
    time_to_resolve_ms: int | None = None
    steps_run: int | None = None
    tool_failures: int | None = None
    rating: int | None = None
    comment: str = ""


# --- control and operations ------------------------------------------------------------------


@event(producers=("intake", "triage", "policy", "playbook", "tool", "resolution", "feedback", "sla"))
class RetryScheduled(EventPayload):
    """An agent failed to handle an event; it will be offered again at `next_attempt_at`."""

    consumer: str
    failed_event_id: str
    failed_event_type: str
    attempt: int
    error: str
    next_attempt_at: str


@event(producers=("intake", "triage", "policy", "playbook", "tool", "resolution", "feedback", "sla"))
class DeadLettered(EventPayload):
    """An agent gave up on an event after its last attempt; an operator can replay it."""

    consumer: str
    failed_event_id: str
    failed_event_type: str
    attempts: int
    error: str
    dead_letter_id: int | None = None


@event(producers=("sla",))
class SLAImminent(EventPayload):
    """An open exception passed the configured fraction of its SLA window."""

    severity: str | None
    sla_due_at: str
    fraction: float


@event(producers=("sla",))
class SLAExpired(EventPayload):
    """An open exception passed its SLA deadline."""

    severity: str | None
    sla_due_at: str


# --- subscriptions: the one declaration of who consumes what ---------------------------------

SUBSCRIPTIONS: dict[str, frozenset[str]] = {
    "intake": frozenset({"ExceptionIngested", "ManualExceptionCreated"}),
    "triage": frozenset({"TriageRequested"}),
    "policy": frozenset({"PolicyEvaluationRequested", "PlaybookRecalculationRequested"}),
    "playbook": frozenset({"PlaybookMatched", "ToolExecutionCompleted", "ApprovalDecided", "PlaybookTimerElapsed"}),
    "tool": frozenset({"ToolExecutionRequested"}),
    "resolution": frozenset({"PlaybookCompleted", "EscalationRequested"}),
    "feedback": frozenset(
        {"ExceptionResolved", "ExceptionEscalated", "ExceptionValidationFailed", "FeedbackSubmitted"}
    ),
    "sla": frozenset(),
}

SUBSCRIBERS: dict[str, tuple[str, ...]] = {
    event_type: tuple(sorted(agent for agent, types in SUBSCRIPTIONS.items() if event_type in types))
    for event_type in CATALOGUE
}


def subscribers(event_type: str) -> tuple[str, ...]:
    return SUBSCRIBERS.get(event_type, ())


def validate_payload(event_type: str, payload: dict[str, Any] | EventPayload) -> dict[str, Any]:
    """Check a payload against its catalogue schema and return its JSON form."""
    cls = CATALOGUE.get(event_type)
    if cls is None:
        raise UnknownEventType(event_type)
    if isinstance(payload, EventPayload):
        if not isinstance(payload, cls):
            raise TypeError(f"{type(payload).__name__} is not a {event_type} payload")
        return payload.model_dump(mode="json")
    return cls.model_validate(payload).model_dump(mode="json")


class UnknownEventType(KeyError):
    pass


# --- the envelope ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Envelope:
    """A stored event as it travels: the row of `exception_event`, JSON-safe."""

    event_id: str
    event_type: str
    tenant_id: str
    exception_id: str
    sequence: int
    causation_id: str | None
    producer: str
    payload: dict[str, Any]
    schema_version: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)
    recorded_at: datetime | None = None

    def prev_for(self, consumer: str) -> str | None:
        """The previous event of this exception that `consumer` must apply before this one."""
        prev = self.metadata.get("prev")
        return prev.get(consumer) if prev else None

    def to_message(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "exception_id": self.exception_id,
            "sequence": self.sequence,
            "causation_id": self.causation_id,
            "producer": self.producer,
            "payload": self.payload,
            "schema_version": self.schema_version,
            "metadata": self.metadata,
            "recorded_at": self.recorded_at.isoformat() if self.recorded_at else None,
        }

    @classmethod
    def from_message(cls, tenant_id: str, data: dict[str, Any]) -> Envelope:
        recorded_at = data.get("recorded_at")
        causation = data.get("causation_id")
        return cls(
            event_id=ids.parse(data["event_id"]),
            event_type=str(data["event_type"]),
            tenant_id=tenant_id,
            exception_id=ids.parse(data["exception_id"]),
            sequence=int(data["sequence"]),
            causation_id=ids.parse(causation) if causation else None,
            producer=str(data["producer"]),
            payload=dict(data["payload"]),
            schema_version=int(data.get("schema_version", 1)),
            metadata=dict(data.get("metadata") or {}),
            recorded_at=datetime.fromisoformat(recorded_at) if recorded_at else None,
        )


EVENT_NAMESPACE = uuid.UUID("6b1f6c4e-3f0a-4c39-9a4e-0d3c5e1d7a11")


def derived_event_id(producer: str, cause_id: str, index: int | str) -> str:
    """Deterministic id of the `index`-th event `producer` emits for `cause_id` (uuid5): a re-run of
    the same handler on the same event produces the same ids."""
    return ids.uuid5(EVENT_NAMESPACE, f"{producer}:{cause_id}:{index}")
