"""Feedback: capture how an exception's handling went (system) and what users say about it (user)."""

from __future__ import annotations

from collections import Counter

from sentinai.eventstore.events import FeedbackCaptured
from sentinai.pipeline.agent import Agent, Decision, Emit, Upsert


def _ms(later, earlier) -> int | None:
    if later is None or earlier is None:
        return None
    return int((later - earlier).total_seconds() * 1000)


class FeedbackAgent(Agent):
    name = "feedback"
    exception_fields = ("status", "created_at", "triaged_at", "closed_at")

    def load(self, batch, states):
        from playbooks_app.models import PlaybookRunStep, StepStatus
        from tools_app.models import ExecutionStatus, ToolExecution

        ids = list(states)
        batch.data["steps_run"] = Counter(
            str(x)
            for x in PlaybookRunStep.objects.filter(run__exception_id__in=ids, status=StepStatus.SUCCEEDED).values_list(
                "run__exception_id", flat=True
            )
        )
        batch.data["tool_failures"] = Counter(
            str(x)
            for x in ToolExecution.objects.filter(
                exception_id__in=ids, status__in=(ExecutionStatus.FAILED, ExecutionStatus.DEAD_LETTERED)
            ).values_list("exception_id", flat=True)
        )

    def decide(self, batch, state, event):
        from exceptions_app.models import Feedback

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
