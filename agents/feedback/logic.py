"""Feedback: capture how an exception's handling went (system) and what users say about it (user)."""

from __future__ import annotations

from exceptions_app.models import Feedback
from playbooks_app import selectors as playbook_selectors
from sentinai.eventstore.events import FeedbackCaptured
from sentinai.pipeline.agent import Agent, Decision, Emit, Upsert
from tools_app import selectors as tool_selectors


def _ms(later, earlier) -> int | None:
    if later is None or earlier is None:
        return None
    return int((later - earlier).total_seconds() * 1000)


class FeedbackAgent(Agent):
    name = "feedback"
    exception_fields = ("status", "created_at", "triaged_at", "closed_at")

    def load(self, batch, states):
        batch.data.update(
            steps_run=playbook_selectors.succeeded_step_counts(tenant_id=batch.tenant_id, exception_ids=list(states)),
            tool_failures=tool_selectors.failed_execution_counts(tenant_id=batch.tenant_id, exception_ids=list(states)),
        )

    def decide(self, batch, state, event):
        exception_id = event.exception_id
        if event.event_type == "FeedbackSubmitted":
            captured = FeedbackCaptured(
                kind="user",
                outcome=event.payload.get("outcome") or state["status"],
                rating=event.payload.get("rating"),
                comment=event.payload.get("comment", ""),
            )
        else:
            captured = FeedbackCaptured(
                kind="system",
                outcome=state["status"],
                time_to_triage_ms=_ms(state.get("triaged_at"), state.get("created_at")),
                time_to_resolve_ms=_ms(state.get("closed_at"), state.get("created_at")),
                steps_run=batch.data["steps_run"][exception_id],
                tool_failures=batch.data["tool_failures"][exception_id],
            )
        values = captured.model_dump()
        return Decision(
            emit=[Emit.of(captured)],
            records=[
                Upsert(
                    Feedback,
                    {
                        "tenant_id": batch.tenant_id,
                        "exception_id": exception_id,
                        "event_id": event.event_id,
                        "kind": values["kind"],
                        "outcome": values["outcome"],
                        "time_to_triage_ms": values["time_to_triage_ms"],
                        "time_to_resolve_ms": values["time_to_resolve_ms"],
                        "steps_run": values["steps_run"],
                        "tool_failures": values["tool_failures"],
                        "rating": values["rating"],
                        "comment": values["comment"],
                    },
                    unique=("event_id",),
                )
            ],
        )


AGENT = FeedbackAgent()
