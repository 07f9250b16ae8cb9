"""Pass-through agents for bench/pipeline.py: each consumes its events and emits the next event of the
pipeline, so a benchmark exception crosses all seven agent queues (eight hops) with no business logic:

ExceptionIngested -> intake -> TriageRequested -> triage -> PolicyEvaluationRequested -> policy ->
PlaybookMatched -> playbook -> ToolExecutionRequested -> tool -> ToolExecutionCompleted -> playbook ->
PlaybookCompleted -> resolution -> ExceptionResolved -> feedback -> FeedbackCaptured
"""

from __future__ import annotations

from sentinai.eventstore.events import (
    ExceptionResolved,
    FeedbackCaptured,
    PlaybookCompleted,
    PlaybookMatched,
    PolicyEvaluationRequested,
    ToolExecutionCompleted,
    ToolExecutionRequested,
    TriageRequested,
)
from sentinai.pipeline.agent import Agent, Decision, Emit


class PassThrough(Agent):
    exception_fields = ()

    def next_event(self, event):
        raise NotImplementedError

    def decide(self, batch, state, event):
        return Decision(emit=[Emit.of(self.next_event(event))])


class Intake(PassThrough):
    name = "intake"

    def next_event(self, event):
        return TriageRequested(exception_type="BENCH")


class Triage(PassThrough):
    name = "triage"

    def next_event(self, event):
        return PolicyEvaluationRequested(exception_type="BENCH", severity="low")


class Policy(PassThrough):
    name = "policy"

    def next_event(self, event):
        return PlaybookMatched(playbook_id="bench", playbook_name="bench", playbook_version=1, requires_approval=False)


class Playbook(PassThrough):
    name = "playbook"

    def next_event(self, event):
        if event.event_type == "PlaybookMatched":
            return ToolExecutionRequested(execution_id=str(event.event_id), tool="noop")
        return PlaybookCompleted(run_id="bench", outcome="succeeded", steps_run=1)


class Tool(PassThrough):
    name = "tool"

    def next_event(self, event):
        return ToolExecutionCompleted(
            execution_id=event.payload["execution_id"], tool="noop", status="succeeded", attempts=1
        )


class Resolution(PassThrough):
    name = "resolution"

    def next_event(self, event):
        return ExceptionResolved(reason="bench")


class Feedback(PassThrough):
    name = "feedback"

    def next_event(self, event):
        return FeedbackCaptured(kind="system", outcome="resolved")


IMPLEMENTATIONS = {
    agent.name: f"bench.passthrough:{agent.__name__}"
    for agent in (Intake, Triage, Policy, Playbook, Tool, Resolution, Feedback)
}
HOPS_PER_EXCEPTION = 8
