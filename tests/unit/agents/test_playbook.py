"""The playbook agent's decisions, on in-memory state shaped as playbooks_app.selectors loads it."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from agents.playbook import logic
from agents.playbook.logic import AGENT, execution_id_for, run_id_for
from playbooks_app.domain import (
    PlaybookBatchState,
    RunState,
    RunStatus,
    StepAction,
    StepDefinition,
    StepState,
    StepStatus,
)
from playbooks_app.models import PlaybookRun, PlaybookRunStep
from sentinai.eventstore.events import Envelope
from sentinai.pipeline.agent import Batch, Decision
from tools_app.models import ToolExecution

TENANT = "acme"
EXCEPTION = "9d6f3a52-0000-4000-8000-000000000001"
PLAYBOOK = "5b1c0a10-0000-4000-8000-0000000000aa"
VERSION = 3
TOOL_ID = "7e2d1f00-0000-4000-8000-0000000000bb"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
EARLIER = datetime(2025, 3, 1, 11, 0, tzinfo=UTC)


# --- building state as the selector returns it ---------------------------------------------


def step(position: int, name: str, action: StepAction, tool: str = "", **fields: Any) -> StepDefinition:
    return StepDefinition(position=position, name=name, action=action, tool=tool, **fields)


def loaded(
    steps: list[StepDefinition] = (),
    runs: dict[str, RunState] | None = None,
    versions: dict[str, int] | None = None,
) -> PlaybookBatchState:
    return PlaybookBatchState(
        runs=runs or {},
        definitions={PLAYBOOK: {s.position: s for s in steps}},
        versions={PLAYBOOK: VERSION} if versions is None else versions,
        tool_ids={("retry_settlement", VERSION): TOOL_ID, ("notify_desk", VERSION): TOOL_ID},
    )


def a_run(steps: list[StepDefinition], statuses: dict[int, StepStatus], **fields: Any) -> RunState:
    """A run loaded mid-way: the steps of `statuses` got that far, the others are pending."""
    run = RunState(
        id=fields.pop("id", str(uuid.uuid4())),
        exception_id=EXCEPTION,
        playbook_id=PLAYBOOK,
        version=VERSION,
        status=fields.pop("status", RunStatus.RUNNING),
        current_position=max(statuses, default=0),
        policy={"requires_approval": True},
        started_at=EARLIER,
        finished_at=None,
        steps={s.position: StepState(s) for s in steps},
    )
    for position, status in statuses.items():
        state = run.steps[position]
        state.status = status
        state.started_at = EARLIER
        if status in (StepStatus.SUCCEEDED, StepStatus.SKIPPED):
            state.finished_at = EARLIER
        if state.definition.action in (StepAction.TOOL, StepAction.NOTIFY):
            state.tool_execution_id = execution_id_for(run.id, position)
    return run


def exception_state(**fields: Any) -> dict[str, Any]:
    return {
        "status": "triaged",
        "exception_type": "settlement_failed",
        "severity": "high",
        "priority": 2,
        "normalized": {"reference": "TX-42", "amount": 1200},
        "payload": {},
        "closed_at": None,
        **fields,
    }


def envelope(event_type: str, payload: dict[str, Any], event_id: str | None = None) -> Envelope:
    return Envelope(
        event_id=event_id or str(uuid.uuid4()),
        event_type=event_type,
        tenant_id=TENANT,
        exception_id=EXCEPTION,
        sequence=1,
        causation_id=None,
        producer="test",
        payload=payload,
    )


def matched(requires_approval: bool = False, **fields: Any) -> Envelope:
    return envelope(
        "PlaybookMatched",
        {
            "playbook_id": PLAYBOOK,
            "playbook_name": "settlement_retry",
            "playbook_version": VERSION,
            "requires_approval": requires_approval,
            **fields,
        },
    )


def tool_completed(run: RunState, position: int, status: str = "succeeded", **fields: Any) -> Envelope:
    return envelope(
        "ToolExecutionCompleted",
        {
            "execution_id": execution_id_for(run.id, position),
            "tool": run.steps[position].definition.tool,
            "status": status,
            "attempts": 1,
            "run_id": run.id,
            "position": position,
            **fields,
        },
    )


def approval(run: RunState, position: int, decision: str, decided_by: str = "alice") -> Envelope:
    return envelope(
        "ApprovalDecided",
        {"decision": decision, "decided_by": decided_by, "comment": "checked", "run_id": run.id, "position": position},
    )


def timer(run: RunState, position: int) -> Envelope:
    return envelope("PlaybookTimerElapsed", {"run_id": run.id, "position": position})


def decide(data: PlaybookBatchState, event: Envelope, state: dict[str, Any] | None = None) -> Decision:
    batch = Batch(agent="playbook", tenant_id=TENANT, tenant=None, now=NOW, events=[event], data={logic.DATA: data})
    return AGENT.decide(batch, exception_state() if state is None else state, event)


# --- reading the decision ------------------------------------------------------------------


def emitted(decision: Decision) -> list[tuple[str, dict[str, Any]]]:
    return [(e.event_type, e.payload.model_dump()) for e in decision.emit]


def rows(decision: Decision, model) -> list[dict[str, Any]]:
    return [r.values for r in decision.records if r.model is model]


def step_rows(decision: Decision) -> dict[int, dict[str, Any]]:
    return {r["position"]: r for r in rows(decision, PlaybookRunStep)}


def nothing(decision: Decision) -> bool:
    return decision == Decision()


RETRY = step(1, "retry", StepAction.TOOL, "retry_settlement", params={"reference": "{{reference}}"})
RESOLVE = step(2, "close", StepAction.RESOLVE)


# --- starting a run --------------------------------------------------------------------------


def test_a_matched_playbook_starts_a_run_and_requests_its_first_tool():
    event = matched()
    decision = decide(loaded([RETRY, RESOLVE]), event)

    run_id = run_id_for(event.event_id)
    execution_id = execution_id_for(run_id, 1)
    assert emitted(decision) == [
        (
            "StepExecutionRequested",
            {
                "run_id": run_id,
                "position": 1,
                "name": "retry",
                "action": "tool",
                "params": {"reference": "TX-42"},
                "tool_execution_id": execution_id,
            },
        ),
        (
            "ToolExecutionRequested",
            {
                "execution_id": execution_id,
                "tool": "retry_settlement",
                "params": {"reference": "TX-42"},
                "run_id": run_id,
                "position": 1,
                "actor": None,  # a playbook's step: no human took it
            },
        ),
    ]
    assert decision.exception == {"status": "in_progress"}
    assert rows(decision, PlaybookRun) == [
        {
            "id": run_id,
            "tenant_id": TENANT,
            "exception_id": EXCEPTION,
            "playbook_id": PLAYBOOK,
            "status": "running",
            "current_position": 1,
            "policy": {"requires_approval": False},
            "started_at": NOW,
            "finished_at": None,
            "updated_at": NOW,
        }
    ]
    assert step_rows(decision) == {
        1: {
            "run_id": run_id,
            "tenant_id": TENANT,
            "position": 1,
            "name": "retry",
            "action": "tool",
            "status": "running",
            "tool_execution_id": execution_id,
            "output": {},
            "started_at": NOW,
            "finished_at": None,
        },
        2: {
            "run_id": run_id,
            "tenant_id": TENANT,
            "position": 2,
            "name": "close",
            "action": "resolve",
            "status": "pending",
            "tool_execution_id": None,
            "output": {},
            "started_at": None,
            "finished_at": None,
        },
    }
    assert [r.unique for r in decision.records if r.model is PlaybookRunStep] == [("run", "position")] * 2
    assert rows(decision, ToolExecution) == [
        {
            "id": execution_id,
            "tenant_id": TENANT,
            "exception_id": EXCEPTION,
            "tool_id": TOOL_ID,
            "tool_name": "retry_settlement",
            "status": "requested",
            "request": {"params": {"reference": "TX-42"}},
            "requested_by": "playbook",
            "requested_at": NOW,
            "updated_at": NOW,
        }
    ]
    run = decision.state["run"]
    assert (run.id, run.status, run.version, run.current_position) == (run_id, RunStatus.RUNNING, VERSION, 1)


def test_a_run_takes_the_matched_version_when_the_playbook_version_was_not_loaded():
    decision = decide(loaded([RETRY], versions={}), matched())
    assert decision.state["run"].version == VERSION
    assert rows(decision, ToolExecution)[0]["tool_id"] == TOOL_ID


def test_a_tool_of_another_version_than_the_run_is_requested_without_a_tool_id():
    decision = decide(loaded([RETRY], versions={PLAYBOOK: VERSION + 1}), matched())
    assert rows(decision, ToolExecution)[0]["tool_id"] is None
    assert [t for t, _ in emitted(decision)] == ["StepExecutionRequested", "ToolExecutionRequested"]


def test_a_notify_step_requests_its_tool_like_a_tool_step():
    notify = step(1, "tell_desk", StepAction.NOTIFY, "notify_desk", params={"text": "{{reference}} failed"})
    event = matched()
    decision = decide(loaded([notify, RESOLVE]), event)

    run_id = run_id_for(event.event_id)
    (requested, payload), (tool, tool_payload) = emitted(decision)
    assert (requested, payload["action"], payload["tool_execution_id"]) == (
        "StepExecutionRequested",
        "notify",
        execution_id_for(run_id, 1),
    )
    assert (tool, tool_payload["tool"], tool_payload["params"]) == (
        "ToolExecutionRequested",
        "notify_desk",
        {"text": "TX-42 failed"},
    )
    assert rows(decision, ToolExecution)[0]["tool_name"] == "notify_desk"
    assert step_rows(decision)[1]["status"] == "running"
    assert decision.exception == {"status": "in_progress"}


def test_an_approval_step_waits_for_a_human():
    desk = step(1, "desk_approval", StepAction.APPROVAL, params={"amount": "{{amount}}"})
    event = matched(requires_approval=True)
    decision = decide(loaded([desk, RESOLVE]), event)

    assert emitted(decision) == [
        (
            "StepExecutionRequested",
            {
                "run_id": run_id_for(event.event_id),
                "position": 1,
                "name": "desk_approval",
                "action": "approval",
                "params": {"amount": 1200},
                "tool_execution_id": None,
            },
        )
    ]
    assert decision.exception == {"status": "awaiting_approval"}
    assert rows(decision, PlaybookRun)[0]["status"] == "awaiting_approval"
    assert step_rows(decision)[1]["status"] == "awaiting_approval"
    assert step_rows(decision)[1]["started_at"] == NOW
    assert rows(decision, ToolExecution) == []


def test_a_wait_step_records_when_to_wake_up():
    pause = step(1, "cool_off", StepAction.WAIT, params={"seconds": 90})
    decision = decide(loaded([pause, RESOLVE]), matched())

    assert [(t, p["action"], p["params"]) for t, p in emitted(decision)] == [
        ("StepExecutionRequested", "wait", {"seconds": 90})
    ]
    assert step_rows(decision)[1]["status"] == "running"
    assert step_rows(decision)[1]["output"] == {"wake_at": NOW.timestamp() + 90}
    assert rows(decision, PlaybookRun)[0]["status"] == "running"
    assert decision.exception == {"status": "in_progress"}


def test_a_resolve_step_ends_the_run_succeeded():
    event = matched()
    decision = decide(loaded([step(1, "close", StepAction.RESOLVE)]), event)

    run_id = run_id_for(event.event_id)
    assert emitted(decision) == [
        (
            "StepExecutionRequested",
            {
                "run_id": run_id,
                "position": 1,
                "name": "close",
                "action": "resolve",
                "params": {},
                "tool_execution_id": None,
            },
        ),  # fmt: skip
        (
            "StepExecutionCompleted",
            {
                "run_id": run_id,
                "position": 1,
                "name": "close",
                "action": "resolve",
                "status": "succeeded",
                "output": {},
            },
        ),  # fmt: skip
        ("PlaybookCompleted", {"run_id": run_id, "outcome": "succeeded", "reason": "", "steps_run": 1}),
    ]
    (run_row,) = rows(decision, PlaybookRun)
    assert (run_row["status"], run_row["finished_at"]) == ("completed", NOW)
    assert (step_rows(decision)[1]["status"], step_rows(decision)[1]["finished_at"]) == ("succeeded", NOW)
    # Resolution, not the playbook, moves the exception to its terminal state.
    assert decision.exception == {}


def test_an_escalate_step_ends_the_run_escalated_with_its_reason():
    up = step(1, "hand_over", StepAction.ESCALATE, params={"reason": "{{reference}} needs a human"})
    decision = decide(loaded([up]), matched())

    assert [t for t, _ in emitted(decision)] == [
        "StepExecutionRequested",
        "StepExecutionCompleted",
        "PlaybookCompleted",
    ]
    completed = emitted(decision)[-1][1]
    assert (completed["outcome"], completed["reason"], completed["steps_run"]) == (
        "escalated",
        "TX-42 needs a human",
        1,
    )
    assert rows(decision, PlaybookRun)[0]["status"] == "escalated"
    assert step_rows(decision)[1]["status"] == "succeeded"


def test_an_escalate_step_without_a_reason_names_itself():
    decision = decide(loaded([step(1, "hand_over", StepAction.ESCALATE)]), matched())
    assert emitted(decision)[-1][1]["reason"] == "playbook step hand_over escalates"


def test_a_step_whose_condition_does_not_hold_is_skipped():
    desk = step(1, "desk_approval", StepAction.APPROVAL, condition={"field": "policy.requires_approval", "eq": True})
    decision = decide(loaded([desk, replace(RETRY, position=2)]), matched(requires_approval=False))

    assert [(t, p["position"]) for t, p in emitted(decision)] == [
        ("StepExecutionRequested", 2),
        ("ToolExecutionRequested", 2),
    ]
    skipped, started = step_rows(decision)[1], step_rows(decision)[2]
    assert (skipped["status"], skipped["started_at"], skipped["finished_at"]) == ("skipped", None, NOW)
    assert started["status"] == "running"
    assert rows(decision, PlaybookRun)[0]["current_position"] == 2


def test_a_step_whose_condition_holds_runs():
    desk = step(1, "desk_approval", StepAction.APPROVAL, condition={"field": "policy.requires_approval", "eq": True})
    decision = decide(loaded([desk, replace(RETRY, position=2)]), matched(requires_approval=True))

    assert [(t, p["position"]) for t, p in emitted(decision)] == [("StepExecutionRequested", 1)]
    assert step_rows(decision)[1]["status"] == "awaiting_approval"
    assert step_rows(decision)[2]["status"] == "pending"


def test_conditions_read_the_exception_as_the_batch_left_it():
    only_critical = step(1, "page", StepAction.ESCALATE, condition={"field": "exception.severity", "eq": "critical"})
    decision = decide(loaded([only_critical]), matched(), exception_state(severity="critical"))
    assert emitted(decision)[-1][1]["outcome"] == "escalated"


def test_conditions_do_not_see_the_agents_own_run_state():
    previous = a_run([RESOLVE], {2: StepStatus.SUCCEEDED}, status=RunStatus.COMPLETED)
    needs_run = step(1, "close", StepAction.RESOLVE, condition={"field": "exception.run", "exists": True})
    decision = decide(loaded([needs_run]), matched(), exception_state(run=previous))
    assert step_rows(decision)[1]["status"] == "skipped"


def test_a_playbook_whose_steps_are_all_skipped_succeeds():
    never = step(1, "never", StepAction.TOOL, "retry_settlement", condition={"field": "amount", "gt": 10_000})
    event = matched()
    decision = decide(loaded([never]), event)

    assert emitted(decision) == [
        ("PlaybookCompleted", {"run_id": run_id_for(event.event_id), "outcome": "succeeded", "reason": "",
                               "steps_run": 0}),
    ]  # fmt: skip
    assert rows(decision, PlaybookRun)[0]["status"] == "completed"
    assert step_rows(decision)[1]["status"] == "skipped"


def test_a_playbook_without_steps_succeeds_at_once():
    decision = decide(loaded([]), matched())
    assert [(t, p["outcome"], p["steps_run"]) for t, p in emitted(decision)] == [("PlaybookCompleted", "succeeded", 0)]
    assert step_rows(decision) == {}


def test_a_new_match_supersedes_the_run_in_progress():
    desk = step(1, "desk_approval", StepAction.APPROVAL)
    previous = a_run([desk, RESOLVE], {1: StepStatus.AWAITING_APPROVAL}, status=RunStatus.AWAITING_APPROVAL)
    event = matched(recalculated=True)
    decision = decide(loaded([RETRY, RESOLVE], runs={EXCEPTION: previous}), event)

    first, second = rows(decision, PlaybookRun)
    assert decision.records[0].values is first  # the superseded run is written before the new one
    assert (first["id"], first["status"], first["finished_at"], first["started_at"]) == (
        previous.id,
        "superseded",
        NOW,
        EARLIER,
    )
    assert (second["id"], second["status"]) == (run_id_for(event.event_id), "running")
    # The superseded run's steps stay as they were: only the new run's steps are written.
    assert {r["run_id"] for r in rows(decision, PlaybookRunStep)} == {second["id"]}
    assert previous.status == RunStatus.AWAITING_APPROVAL  # the loaded state is not mutated
    assert decision.state["run"].id == second["id"]


def test_a_new_match_after_a_finished_run_supersedes_nothing():
    previous = a_run([RESOLVE], {2: StepStatus.SUCCEEDED}, status=RunStatus.COMPLETED)
    decision = decide(loaded([RETRY], runs={EXCEPTION: previous}), matched())
    assert [r["status"] for r in rows(decision, PlaybookRun)] == ["running"]


# --- continuing a run --------------------------------------------------------------------------


def test_a_succeeded_tool_completes_its_step_and_the_run_goes_on():
    run = a_run([RETRY, RESOLVE], {1: StepStatus.RUNNING})
    decision = decide(loaded([RETRY, RESOLVE], runs={EXCEPTION: run}), tool_completed(run, 1, response={"ok": True}))

    assert emitted(decision)[0] == (
        "StepExecutionCompleted",
        {"run_id": run.id, "position": 1, "name": "retry", "action": "tool", "status": "succeeded",
         "output": {"response": {"ok": True}}},
    )  # fmt: skip
    assert [t for t, _ in emitted(decision)[1:]] == [
        "StepExecutionRequested",
        "StepExecutionCompleted",
        "PlaybookCompleted",
    ]
    assert emitted(decision)[-1][1] == {"run_id": run.id, "outcome": "succeeded", "reason": "", "steps_run": 2}
    retried = step_rows(decision)[1]
    assert (retried["status"], retried["output"], retried["finished_at"], retried["started_at"]) == (
        "succeeded",
        {"response": {"ok": True}},
        NOW,
        EARLIER,
    )
    assert retried["tool_execution_id"] == execution_id_for(run.id, 1)
    (run_row,) = rows(decision, PlaybookRun)
    assert (run_row["id"], run_row["status"], run_row["started_at"]) == (run.id, "completed", EARLIER)
    assert run.steps[1].status == StepStatus.RUNNING  # the loaded state is not mutated


def test_a_failed_tool_fails_the_run():
    run = a_run([RETRY, RESOLVE], {1: StepStatus.RUNNING})
    decision = decide(loaded([RETRY, RESOLVE], runs={EXCEPTION: run}), tool_completed(run, 1, "failed", error="503"))

    assert emitted(decision) == [
        (
            "StepExecutionCompleted",
            {
                "run_id": run.id,
                "position": 1,
                "name": "retry",
                "action": "tool",
                "status": "failed",
                "output": {"error": "503"},
            },
        ),  # fmt: skip
        (
            "PlaybookCompleted",
            {"run_id": run.id, "outcome": "failed", "reason": "tool retry_settlement failed: 503", "steps_run": 0},
        ),
    ]
    assert (rows(decision, PlaybookRun)[0]["status"], rows(decision, PlaybookRun)[0]["finished_at"]) == ("failed", NOW)
    assert step_rows(decision)[1]["status"] == "failed"
    assert 2 not in step_rows(decision)  # the rest of the playbook never runs


def test_a_dead_lettered_tool_fails_the_run_and_says_so():
    run = a_run([RETRY], {1: StepStatus.RUNNING})
    decision = decide(loaded([RETRY], runs={EXCEPTION: run}), tool_completed(run, 1, "dead_lettered", error="x" * 600))
    reason = emitted(decision)[-1][1]["reason"]
    assert reason.startswith("tool retry_settlement dead_lettered: xxx") and len(reason) == 500


def test_a_failed_notification_is_recorded_and_the_run_goes_on():
    notify = step(1, "tell_desk", StepAction.NOTIFY, "notify_desk")
    run = a_run([notify, RESOLVE], {1: StepStatus.RUNNING})
    decision = decide(loaded(runs={EXCEPTION: run}), tool_completed(run, 1, "failed", error="smtp down"))

    assert [(t, p.get("status"), p.get("outcome")) for t, p in emitted(decision)] == [
        ("StepExecutionCompleted", "failed", None),
        ("StepExecutionRequested", None, None),
        ("StepExecutionCompleted", "succeeded", None),
        ("PlaybookCompleted", None, "succeeded"),
    ]
    assert step_rows(decision)[1]["output"] == {"error": "smtp down"}
    assert emitted(decision)[-1][1]["steps_run"] == 1


def test_an_approval_lets_the_run_go_on():
    desk = step(1, "desk_approval", StepAction.APPROVAL)
    run = a_run([desk, RESOLVE], {1: StepStatus.AWAITING_APPROVAL}, status=RunStatus.AWAITING_APPROVAL)
    decision = decide(loaded(runs={EXCEPTION: run}), approval(run, 1, "approve"))

    output = {"decision": "approve", "decided_by": "alice", "comment": "checked"}
    assert emitted(decision)[0] == (
        "StepExecutionCompleted",
        {"run_id": run.id, "position": 1, "name": "desk_approval", "action": "approval", "status": "succeeded",
         "output": output},
    )  # fmt: skip
    assert [t for t, _ in emitted(decision)[1:]] == [
        "StepExecutionRequested",
        "StepExecutionCompleted",
        "PlaybookCompleted",
    ]
    assert step_rows(decision)[1]["output"] == output
    # The exception leaves awaiting_approval even when the next step ends the run.
    assert decision.exception == {"status": "in_progress"}


def test_an_approval_moves_the_run_back_to_running():
    desk = step(1, "desk_approval", StepAction.APPROVAL)
    pause = step(2, "cool_off", StepAction.WAIT, params={"seconds": 5})
    run = a_run([desk, pause], {1: StepStatus.AWAITING_APPROVAL}, status=RunStatus.AWAITING_APPROVAL)
    decision = decide(loaded(runs={EXCEPTION: run}), approval(run, 1, "approve"))
    assert rows(decision, PlaybookRun)[0]["status"] == "running"
    assert decision.state["run"].status == RunStatus.RUNNING


def test_a_rejection_ends_the_run_rejected():
    desk = step(1, "desk_approval", StepAction.APPROVAL)
    run = a_run([desk, RESOLVE], {1: StepStatus.AWAITING_APPROVAL}, status=RunStatus.AWAITING_APPROVAL)
    decision = decide(loaded(runs={EXCEPTION: run}), approval(run, 1, "reject"))

    assert emitted(decision) == [
        (
            "StepExecutionCompleted",
            {
                "run_id": run.id,
                "position": 1,
                "name": "desk_approval",
                "action": "approval",
                "status": "rejected",
                "output": {"decision": "reject", "decided_by": "alice", "comment": "checked"},
            },
        ),  # fmt: skip
        (
            "PlaybookCompleted",
            {"run_id": run.id, "outcome": "rejected", "reason": "step desk_approval rejected by alice", "steps_run": 0},
        ),
    ]
    assert rows(decision, PlaybookRun)[0]["status"] == "rejected"
    assert step_rows(decision)[1]["status"] == "rejected"
    assert decision.exception == {}


def test_a_rejection_by_nobody_in_particular_says_a_human():
    desk = step(1, "desk_approval", StepAction.APPROVAL)
    run = a_run([desk], {1: StepStatus.AWAITING_APPROVAL}, status=RunStatus.AWAITING_APPROVAL)
    decision = decide(loaded(runs={EXCEPTION: run}), approval(run, 1, "reject", decided_by=""))
    assert emitted(decision)[-1][1]["reason"] == "step desk_approval rejected by a human"


def test_an_elapsed_timer_completes_the_wait_and_the_run_goes_on():
    pause = step(1, "cool_off", StepAction.WAIT, params={"seconds": 90})
    run = a_run([pause, replace(RETRY, position=2)], {1: StepStatus.RUNNING})
    run.steps[1].output = {"wake_at": EARLIER.timestamp() + 90}
    decision = decide(loaded(runs={EXCEPTION: run}), timer(run, 1))

    assert emitted(decision)[0] == (
        "StepExecutionCompleted",
        {"run_id": run.id, "position": 1, "name": "cool_off", "action": "wait", "status": "succeeded",
         "output": {"waited": True}},
    )  # fmt: skip
    assert [t for t, _ in emitted(decision)[1:]] == ["StepExecutionRequested", "ToolExecutionRequested"]
    assert step_rows(decision)[1]["output"] == {"waited": True}
    assert step_rows(decision)[2]["tool_execution_id"] == execution_id_for(run.id, 2)
    assert decision.exception == {"status": "in_progress"}


# --- events that change nothing ------------------------------------------------------------


def _waiting_on_each_kind() -> tuple[RunState, RunState, RunState]:
    tool = a_run([RETRY, RESOLVE], {1: StepStatus.RUNNING})
    desk = step(1, "desk_approval", StepAction.APPROVAL)
    approving = a_run([desk, RESOLVE], {1: StepStatus.AWAITING_APPROVAL}, status=RunStatus.AWAITING_APPROVAL)
    waiting = a_run([step(1, "cool_off", StepAction.WAIT), RESOLVE], {1: StepStatus.RUNNING})
    return tool, approving, waiting


def _events_for(tool: RunState, approving: RunState, waiting: RunState) -> list[Envelope]:
    """The event each run waits for."""
    return [tool_completed(tool, 1), approval(approving, 1, "approve"), timer(waiting, 1)]


def test_the_events_the_runs_wait_for_do_change_them():
    # The counterpart of the tests below: the same events, in the right state, are acted on.
    runs = _waiting_on_each_kind()
    for run, event in zip(runs, _events_for(*runs), strict=True):
        decision = decide(loaded(runs={EXCEPTION: run}), event)
        assert emitted(decision)[0][0] == "StepExecutionCompleted", event.event_type


def test_events_of_a_closed_exception_change_nothing():
    tool, _, _ = _waiting_on_each_kind()
    closed = exception_state(status="resolved", closed_at=EARLIER)
    assert nothing(decide(loaded([RETRY], runs={EXCEPTION: tool}), tool_completed(tool, 1), closed))
    assert nothing(decide(loaded([RETRY]), matched(), closed))


def test_events_for_an_exception_without_a_run_change_nothing():
    data = loaded([RETRY])
    for event in _events_for(*_waiting_on_each_kind()):
        assert nothing(decide(data, event)), event.event_type


def test_events_for_a_superseded_run_change_nothing():
    for run, event in zip(_waiting_on_each_kind(), _events_for(*_waiting_on_each_kind()), strict=True):
        # The exception's current run is in the very same state, but it is another run.
        assert run.id != event.payload["run_id"]
        assert nothing(decide(loaded(runs={EXCEPTION: run}), event)), event.event_type


@pytest.mark.parametrize(
    "final", [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.REJECTED, RunStatus.ESCALATED, RunStatus.SUPERSEDED]
)
def test_events_for_a_finished_run_change_nothing(final):
    runs = _waiting_on_each_kind()
    for run, event in zip(runs, _events_for(*runs), strict=True):
        run.status = final
        assert nothing(decide(loaded(runs={EXCEPTION: run}), event)), event.event_type


def test_events_for_a_step_the_run_does_not_have_change_nothing():
    tool, _, _ = _waiting_on_each_kind()
    event = tool_completed(tool, 1)
    event.payload["position"] = 9
    assert nothing(decide(loaded(runs={EXCEPTION: tool}), event))


def test_events_a_step_is_not_waiting_for_change_nothing():
    tool, approving, waiting = _waiting_on_each_kind()
    done = a_run([RETRY, RESOLVE], {1: StepStatus.SUCCEEDED})
    cases = [
        (done, tool_completed(done, 1)),  # a redelivered tool result
        (tool, approval(tool, 1, "approve")),  # an approval for a step that is not awaiting one
        (approving, tool_completed(approving, 1)),  # a tool result for a step awaiting approval
        (tool, timer(tool, 1)),  # a timer for a running step that does not wait
        (waiting, approval(waiting, 1, "approve")),
    ]
    for run, event in cases:
        assert nothing(decide(loaded(runs={EXCEPTION: run}), event)), (event.event_type, run.steps[1])
    waiting.steps[1].status = StepStatus.SUCCEEDED
    assert nothing(decide(loaded(runs={EXCEPTION: waiting}), timer(waiting, 1)))


# --- the batch: load and evolve --------------------------------------------------------------


def test_the_next_event_of_the_batch_sees_the_run_the_previous_one_left():
    start = matched()
    data = loaded([RETRY, RESOLVE])
    batch = Batch(agent="playbook", tenant_id=TENANT, tenant=None, now=NOW, events=[start], data={logic.DATA: data})
    state = exception_state()

    first = AGENT.decide(batch, state, start)
    AGENT.evolve(batch, state, first)
    assert state["status"] == "in_progress" and state["run"] is first.state["run"]

    run = first.state["run"]
    second = AGENT.decide(batch, state, tool_completed(run, 1, response={"ok": True}))
    assert [t for t, _ in emitted(second)] == [
        "StepExecutionCompleted",
        "StepExecutionRequested",
        "StepExecutionCompleted",
        "PlaybookCompleted",
    ]
    AGENT.evolve(batch, state, second)
    assert state["run"].status == RunStatus.COMPLETED
    assert data.runs == {}  # what was loaded stays as loaded


def test_load_asks_the_selector_for_the_batch_exceptions_and_the_matched_playbooks(monkeypatch):
    calls = []
    data = loaded()
    monkeypatch.setattr(logic.selectors, "playbook_batch_state", lambda **kwargs: calls.append(kwargs) or data)
    tool, _, _ = _waiting_on_each_kind()
    events = [matched(), tool_completed(tool, 1)]
    tenant = object()  # the batch's tenant row, handed on for the selector's definitions cache
    batch = Batch(agent="playbook", tenant_id=TENANT, tenant=tenant, now=NOW, events=events)

    AGENT.load(batch, {EXCEPTION: exception_state()})

    assert calls == [{"tenant": tenant, "exception_ids": [EXCEPTION], "playbook_ids": {PLAYBOOK}}]
    assert batch.data[logic.DATA] is data
