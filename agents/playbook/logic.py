"""Playbook: drive a playbook run step by step, by events.

PlaybookMatched starts a run of that playbook version (superseding a run in progress: recalculation).
Steps run in order; a step whose condition does not hold is skipped. `tool` and `notify` steps request a
tool execution and wait for ToolExecutionCompleted; `approval` waits for ApprovalDecided (POST
.../approve); `wait` waits for PlaybookTimerElapsed; `resolve` and `escalate` end the run. A run ends with
PlaybookCompleted (succeeded, failed, rejected or escalated), which resolution turns into the
exception's terminal state. A run keeps the playbook version and steps it started with.

The decisions are pure: the run state comes from playbooks_app.selectors (PlaybookAgent.load), the
records go back to the consumer framework.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from exceptions_app.models import ExceptionStatus
from playbooks_app import selectors
from playbooks_app.domain import (
    ACTIVE_RUN_STATUSES,
    PlaybookBatchState,
    RunOutcome,
    RunState,
    RunStatus,
    StepAction,
    StepState,
    StepStatus,
)
from playbooks_app.models import PlaybookRun, PlaybookRunStep
from sentinai.eventstore.events import (
    ApprovalDecided,
    Envelope,
    PlaybookCompleted,
    PlaybookMatched,
    PlaybookTimerElapsed,
    StepExecutionCompleted,
    StepExecutionRequested,
    ToolExecutionCompleted,
    ToolExecutionRequested,
)
from sentinai.kernel import ids
from sentinai.packs.conditions import exception_view, holds, render
from sentinai.pipeline.agent import Agent, Batch, Decision, Emit, Upsert
from tools_app.models import ExecutionStatus, ToolExecution

NAMESPACE = uuid.UUID("0f4c8a52-6a0e-4b8e-9d0e-5a2b1c3d4e5f")
# batch.data key of the loaded PlaybookBatchState
DATA = "playbooks"
# The framework's state key of a run this batch's decisions changed (it wins over the loaded one).
RUN = "run"


def run_id_for(matched_event_id: str) -> str:
    return ids.uuid5(NAMESPACE, f"run:{matched_event_id}")


def execution_id_for(run_id: str, position: int) -> str:
    return ids.uuid5(NAMESPACE, f"execution:{run_id}:{position}")


# --- the events, each built here only ----------------------------------------------------------


def step_requested(run: RunState, step: StepState, params: dict[str, Any]) -> Emit:
    return Emit.of(
        StepExecutionRequested(
            run_id=run.id,
            position=step.definition.position,
            name=step.definition.name,
            action=step.definition.action,
            params=params,
            tool_execution_id=step.tool_execution_id,
        )
    )


def step_completed(run: RunState, step: StepState, output: dict[str, Any]) -> Emit:
    return Emit.of(
        StepExecutionCompleted(
            run_id=run.id,
            position=step.definition.position,
            name=step.definition.name,
            action=step.definition.action,
            status=step.status,
            output=output,
        )
    )


def tool_requested(run: RunState, step: StepState, params: dict[str, Any]) -> Emit:
    return Emit.of(
        ToolExecutionRequested(
            execution_id=step.tool_execution_id,
            tool=step.definition.tool,
            params=params,
            run_id=run.id,
            position=step.definition.position,
        )
    )


def playbook_completed(run: RunState, outcome: RunOutcome, reason: str) -> Emit:
    steps_run = sum(1 for s in run.steps.values() if s.status == StepStatus.SUCCEEDED)
    return Emit.of(PlaybookCompleted(run_id=run.id, outcome=outcome, reason=reason, steps_run=steps_run))


# --- a decision in progress ----------------------------------------------------------------------


@dataclass(slots=True)
class _Draft:
    """A run being decided on (a copy: the loaded state stays as it was) and what the decision
    produces."""

    run: RunState
    now: datetime
    tenant_id: str
    emit: list[Emit] = field(default_factory=list)
    exception: dict[str, Any] = field(default_factory=dict)
    changed_steps: set[int] = field(default_factory=set)
    tool_executions: list[Upsert] = field(default_factory=list)

    def step(self, position: int) -> StepState:
        self.changed_steps.add(position)
        return self.run.steps[position]

    def finish_step(self, position: int, status: StepStatus, output: dict[str, Any] | None = None) -> None:
        step = self.step(position)
        step.status = status
        step.finished_at = self.now
        step.output = output or {}
        self.emit.append(step_completed(self.run, step, step.output))

    def wait(self, run_status: RunStatus, exception_status: ExceptionStatus) -> None:
        self.run.status = run_status
        self.exception["status"] = exception_status

    def end(self, outcome: RunOutcome, reason: str = "") -> None:
        self.run.status = outcome.run_status
        self.run.finished_at = self.now
        self.emit.append(playbook_completed(self.run, outcome, reason))

    def records(self) -> list[Upsert]:
        run = self.run
        records = [
            Upsert(
                PlaybookRun,
                {
                    "id": run.id,
                    "tenant_id": self.tenant_id,
                    "exception_id": run.exception_id,
                    "playbook_id": run.playbook_id,
                    "status": run.status,
                    "current_position": run.current_position,
                    "policy": run.policy,
                    "started_at": run.started_at,
                    "finished_at": run.finished_at,
                    "updated_at": self.now,
                },
            )
        ]
        for position in sorted(self.changed_steps):
            step = run.steps[position]
            records.append(
                Upsert(
                    PlaybookRunStep,
                    {
                        "run_id": run.id,
                        "tenant_id": self.tenant_id,
                        "position": position,
                        "name": step.definition.name,
                        "action": step.definition.action,
                        "status": step.status,
                        "tool_execution_id": step.tool_execution_id,
                        "output": step.output or {},
                        "started_at": step.started_at,
                        "finished_at": step.finished_at,
                    },
                    unique=("run", "position"),
                )
            )
        return records

    def decision(self) -> Decision:
        return Decision(
            emit=self.emit,
            exception=self.exception,
            records=self.records() + self.tool_executions,
            state={RUN: self.run},
        )


# --- starting a step, by its action ------------------------------------------------------------
# Every action either waits for an event or ends the run: advancing stops at the first step run.


def _start_tool(batch: Batch, draft: _Draft, step: StepState, params: dict[str, Any]) -> None:
    step.tool_execution_id = execution_id_for(draft.run.id, step.definition.position)
    draft.emit.append(step_requested(draft.run, step, params))
    draft.emit.append(tool_requested(draft.run, step, params))
    tool_id = batch.data[DATA].tool_ids.get((step.definition.tool, draft.run.version))
    draft.tool_executions.append(
        Upsert(
            ToolExecution,
            {
                "id": step.tool_execution_id,
                "tenant_id": draft.tenant_id,
                "exception_id": draft.run.exception_id,
                "tool_id": tool_id,
                "tool_name": step.definition.tool,
                "status": ExecutionStatus.REQUESTED,
                "request": {"params": params},
                "requested_by": "playbook",
                "requested_at": draft.now,
                "updated_at": draft.now,
            },
        )
    )
    draft.wait(RunStatus.RUNNING, ExceptionStatus.IN_PROGRESS)


def _start_approval(batch: Batch, draft: _Draft, step: StepState, params: dict[str, Any]) -> None:
    draft.emit.append(step_requested(draft.run, step, params))
    step.status = StepStatus.AWAITING_APPROVAL
    draft.wait(RunStatus.AWAITING_APPROVAL, ExceptionStatus.AWAITING_APPROVAL)


def _start_wait(batch: Batch, draft: _Draft, step: StepState, params: dict[str, Any]) -> None:
    draft.emit.append(step_requested(draft.run, step, params))
    # The scheduler's timer scan finds the step by this wake-up time (epoch seconds).
    step.output = {"wake_at": draft.now.timestamp() + float(params.get("seconds", 0))}
    draft.wait(RunStatus.RUNNING, ExceptionStatus.IN_PROGRESS)


def _start_resolve(batch: Batch, draft: _Draft, step: StepState, params: dict[str, Any]) -> None:
    draft.emit.append(step_requested(draft.run, step, params))
    draft.finish_step(step.definition.position, StepStatus.SUCCEEDED)
    draft.end(RunOutcome.SUCCEEDED)


def _start_escalate(batch: Batch, draft: _Draft, step: StepState, params: dict[str, Any]) -> None:
    draft.emit.append(step_requested(draft.run, step, params))
    draft.finish_step(step.definition.position, StepStatus.SUCCEEDED)
    reason = params.get("reason") or f"playbook step {step.definition.name} escalates"
    draft.end(RunOutcome.ESCALATED, str(reason))


STEP_STARTERS: dict[StepAction, Callable[[Batch, _Draft, StepState, dict[str, Any]], None]] = {
    StepAction.TOOL: _start_tool,
    StepAction.NOTIFY: _start_tool,
    StepAction.APPROVAL: _start_approval,
    StepAction.WAIT: _start_wait,
    StepAction.RESOLVE: _start_resolve,
    StepAction.ESCALATE: _start_escalate,
}


def advance(batch: Batch, state: dict[str, Any], draft: _Draft, position: int) -> None:
    """Run the steps from `position` on: skip those whose condition does not hold, start the first
    that does; with none left the run has succeeded."""
    run = draft.run
    view = exception_view(run.exception_id, _exception_fields(state), run.policy)
    while position in run.steps:
        run.current_position = position
        step = draft.step(position)
        if not holds(step.definition.condition, view):
            step.status = StepStatus.SKIPPED
            step.finished_at = draft.now
            position += 1
            continue
        step.status = StepStatus.RUNNING
        step.started_at = draft.now
        STEP_STARTERS[step.definition.action](batch, draft, step, render(step.definition.params, view))
        return
    draft.end(RunOutcome.SUCCEEDED)


def _exception_fields(state: dict[str, Any]) -> dict[str, Any]:
    # The run is the agent's own state, not a field of the exception conditions may read.
    return {key: value for key, value in state.items() if key != RUN}


# --- continuing a run, by the event --------------------------------------------------------------
# Each handler returns False when the step is not in the state the event answers (a duplicate or a
# late event): the event then changes nothing.


def _tool_completed(batch: Batch, state: dict[str, Any], draft: _Draft, step: StepState, event: Any) -> bool:
    if step.status != StepStatus.RUNNING:
        return False
    position = step.definition.position
    if event.status == ExecutionStatus.SUCCEEDED:
        draft.finish_step(position, StepStatus.SUCCEEDED, {"response": event.response})
        advance(batch, state, draft, position + 1)
    elif step.definition.action == StepAction.NOTIFY:
        # Notifications are best effort: a failed one is recorded and the playbook goes on.
        draft.finish_step(position, StepStatus.FAILED, {"error": event.error})
        advance(batch, state, draft, position + 1)
    else:
        draft.finish_step(position, StepStatus.FAILED, {"error": event.error})
        draft.end(RunOutcome.FAILED, f"tool {step.definition.tool} {event.status}: {event.error}"[:500])
    return True


def _approval_decided(batch: Batch, state: dict[str, Any], draft: _Draft, step: StepState, event: Any) -> bool:
    if step.status != StepStatus.AWAITING_APPROVAL:
        return False
    position = step.definition.position
    output = {"decision": event.decision, "decided_by": event.decided_by, "comment": event.comment}
    if event.decision == "approve":
        draft.finish_step(position, StepStatus.SUCCEEDED, output)
        draft.wait(RunStatus.RUNNING, ExceptionStatus.IN_PROGRESS)
        advance(batch, state, draft, position + 1)
    else:
        draft.finish_step(position, StepStatus.REJECTED, output)
        draft.end(RunOutcome.REJECTED, f"step {step.definition.name} rejected by {event.decided_by or 'a human'}")
    return True


def _timer_elapsed(batch: Batch, state: dict[str, Any], draft: _Draft, step: StepState, event: Any) -> bool:
    if step.status != StepStatus.RUNNING or step.definition.action != StepAction.WAIT:
        return False
    draft.finish_step(step.definition.position, StepStatus.SUCCEEDED, {"waited": True})
    advance(batch, state, draft, step.definition.position + 1)
    return True


# event type -> (its payload class, its handler)
CONTINUATIONS: dict[str, tuple[type, Callable[..., bool]]] = {
    ToolExecutionCompleted.event_type: (ToolExecutionCompleted, _tool_completed),
    ApprovalDecided.event_type: (ApprovalDecided, _approval_decided),
    PlaybookTimerElapsed.event_type: (PlaybookTimerElapsed, _timer_elapsed),
}


# --- the agent -----------------------------------------------------------------------------------


def _matched_playbooks(batch: Batch) -> set[str]:
    return {e.payload["playbook_id"] for e in batch.events if e.event_type == PlaybookMatched.event_type}


def current_run(batch: Batch, state: dict[str, Any], exception_id: str) -> RunState | None:
    """The exception's run as this batch's earlier decisions left it, else as loaded."""
    if RUN in state:
        return state[RUN]
    return batch.data[DATA].runs.get(exception_id)


class PlaybookAgent(Agent):
    name = "playbook"
    exception_fields = ("status", "exception_type", "severity", "priority", "normalized", "payload", "closed_at")

    def load(self, batch, states):
        batch.data[DATA] = selectors.playbook_batch_state(
            tenant=batch.tenant, exception_ids=list(states), playbook_ids=_matched_playbooks(batch)
        )

    def evolve(self, batch, state, decision):
        super().evolve(batch, state, decision)
        if RUN in decision.state:
            state[RUN] = decision.state[RUN]

    def decide(self, batch: Batch, state: dict[str, Any], event: Envelope) -> Decision:
        if state.get("closed_at") is not None:
            return Decision()
        if event.event_type == PlaybookMatched.event_type:
            return self._start(batch, state, event)
        payload_class, handle = CONTINUATIONS[event.event_type]
        payload = payload_class.model_validate(event.payload)
        current = current_run(batch, state, event.exception_id)
        if current is None or payload.run_id != current.id or current.status not in ACTIVE_RUN_STATUSES:
            return Decision()  # for a superseded or finished run: nothing to do
        if payload.position not in current.steps:
            return Decision()
        draft = _Draft(current.copy(), batch.now, batch.tenant_id)
        if not handle(batch, state, draft, draft.run.steps[payload.position], payload):
            return Decision()
        return draft.decision()

    def _start(self, batch: Batch, state: dict[str, Any], event: Envelope) -> Decision:
        matched = PlaybookMatched.model_validate(event.payload)
        loaded: PlaybookBatchState = batch.data[DATA]
        records: list[Upsert] = []
        previous = current_run(batch, state, event.exception_id)
        if previous is not None and previous.status in ACTIVE_RUN_STATUSES:
            superseded = _Draft(previous.copy(), batch.now, batch.tenant_id)
            superseded.run.status = RunStatus.SUPERSEDED
            superseded.run.finished_at = batch.now
            records.extend(superseded.records())
        run = RunState(
            id=run_id_for(event.event_id),
            exception_id=event.exception_id,
            playbook_id=matched.playbook_id,
            version=loaded.versions.get(matched.playbook_id, matched.playbook_version),
            status=RunStatus.RUNNING,
            current_position=0,
            policy={"requires_approval": matched.requires_approval},
            started_at=batch.now,
            finished_at=None,
            steps={
                position: StepState(definition)
                for position, definition in loaded.definitions.get(matched.playbook_id, {}).items()
            },
        )
        draft = _Draft(run, batch.now, batch.tenant_id)
        draft.changed_steps.update(run.steps)
        advance(batch, state, draft, 1)
        decision = draft.decision()
        decision.records[:0] = records
        return decision


AGENT = PlaybookAgent()
