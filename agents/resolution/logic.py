"""Resolution: turn a playbook's outcome (or a request to escalate) into the exception's terminal state."""

from __future__ import annotations

from sentinai.eventstore.events import ExceptionEscalated, ExceptionResolved
from sentinai.pipeline.agent import Agent, Decision, Emit


class ResolutionAgent(Agent):
    name = "resolution"
    exception_fields = ("status", "closed_at", "created_at")

    def decide(self, batch, state, event):
        if state.get("closed_at") is not None:
            return Decision()  # already resolved or escalated
        payload = event.payload
        if event.event_type == "PlaybookCompleted" and payload["outcome"] == "succeeded":
            return Decision(
                exception={"status": "resolved", "closed_at": batch.now},
                emit=[Emit.of(ExceptionResolved(run_id=payload["run_id"], reason="playbook completed"))],
            )
        if event.event_type == "PlaybookCompleted":
            reason = payload.get("reason") or f"playbook {payload['outcome']}"
            run_id = payload["run_id"]
        else:
            reason, run_id = payload["reason"], None
        return Decision(
            exception={"status": "escalated", "closed_at": batch.now},
            emit=[Emit.of(ExceptionEscalated(reason=reason, run_id=run_id))],
        )


AGENT = ResolutionAgent()
