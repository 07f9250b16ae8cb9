"""Playbook: drive a playbook run step by step, by events.

PlaybookMatched starts a run of that playbook version (superseding a run in progress: recalculation).
Steps run in order; a step whose condition does not hold is skipped. `tool` and `notify` steps request a
tool execution and wait for ToolExecutionCompleted; `approval` waits for ApprovalDecided (POST
.../approve); `wait` waits for PlaybookTimerElapsed; `resolve` and `escalate` end the run. A run ends with
PlaybookCompleted (succeeded, failed, rejected or escalated), which resolution turns into the
exception's terminal state. A run keeps the playbook version and steps it started with.
"""

from __future__ import annotations

import copy
import uuid
from collections import defaultdict
from typing import Any

from sentinai.eventstore.events import (
    PlaybookCompleted,
    StepExecutionCompleted,
    StepExecutionRequested,
    ToolExecutionRequested,
)
from sentinai.kernel import ids
from sentinai.packs.conditions import exception_view, holds, render
from sentinai.pipeline.agent import Agent, Decision, Emit, Upsert

NAMESPACE = uuid.UUID("0f4c8a52-6a0e-4b8e-9d0e-5a2b1c3d4e5f")
ACTIVE = ("running", "awaiting_approval")


def run_id_for(matched_event_id: str) -> str:
    return ids.uuid5(NAMESPACE, f"run:{matched_event_id}")


def execution_id_for(run_id: str, position: int) -> str:
    return ids.uuid5(NAMESPACE, f"execution:{run_id}:{position}")


class _Run:
    """A run being decided on: its row, its steps, and the records and events the decision produces."""

    def __init__(self, run: dict[str, Any], now):
        self.run = run
        self.now = now
        self.emit: list[Emit] = []
        self.exception: dict[str, Any] = {}
        self.changed_steps: set[int] = set()
        self.tool_executions: list[Upsert] = []

    @property
    def id(self) -> str:
        return self.run["id"]

    def step(self, position: int) -> dict[str, Any]:
        return self.run["steps"][position]

    def set_step(self, position: int, **values) -> None:
        self.step(position).update(values)
        self.changed_steps.add(position)

    def finish_step(self, position: int, status: str, output: dict | None = None) -> None:
        step = self.step(position)
        self.set_step(position, status=status, finished_at=self.now, output=output or step.get("output") or {})
        self.emit.append(
            Emit.of(
                StepExecutionCompleted(
                    run_id=self.id,
                    position=position,
                    name=step["name"],
                    action=step["action"],
                    status=status,
                    output=output or {},
                )
            )
        )

    def end(self, outcome: str, reason: str = "") -> None:
        self.run["status"] = {"succeeded": "completed"}.get(outcome, outcome)
        self.run["finished_at"] = self.now
        steps_run = sum(1 for s in self.run["steps"].values() if s["status"] == "succeeded")
        self.emit.append(
            Emit.of(PlaybookCompleted(run_id=self.id, outcome=outcome, reason=reason, steps_run=steps_run))
        )

    def records(self, tenant_id: str) -> list[Upsert]:
        from playbooks_app.models import PlaybookRun, PlaybookRunStep

        run = self.run
        records: list[Upsert] = [
            Upsert(
                PlaybookRun,
                {
                    "id": run["id"],
                    "tenant_id": tenant_id,
                    "exception_id": run["exception_id"],
                    "playbook_id": run["playbook_id"],
                    "status": run["status"],
                    "current_position": run["current_position"],
                    "policy": run["policy"],
                    "started_at": run["started_at"],
                    "finished_at": run["finished_at"],
                    "updated_at": self.now,
                },
            )
        ]
        for position in sorted(self.changed_steps):
            step = self.step(position)
            records.append(
                Upsert(
                    PlaybookRunStep,
                    {
                        "run_id": run["id"],
                        "tenant_id": tenant_id,
                        "position": position,
                        "name": step["name"],
                        "action": step["action"],
                        "status": step["status"],
                        "tool_execution_id": step["tool_execution_id"],
                        "output": step.get("output") or {},
                        "started_at": step["started_at"],
                        "finished_at": step["finished_at"],
                    },
                    unique=("run", "position"),
                )
            )
        return records


class PlaybookAgent(Agent):
    name = "playbook"
    exception_fields = ("status", "exception_type", "severity", "priority", "normalized", "payload", "closed_at")

    def load(self, batch, states):
        from playbooks_app.models import Playbook, PlaybookRun, PlaybookRunStep, PlaybookStep
        from tools_app.models import Tool

        runs: dict[str, dict] = {}
        for row in (
            PlaybookRun.objects.filter(exception_id__in=list(states))
            .exclude(status="superseded")
            .order_by("exception_id", "-started_at")
            .values(
                "id", "exception_id", "playbook_id", "status", "current_position", "policy", "started_at", "finished_at"
            )
        ):
            runs.setdefault(
                str(row["exception_id"]), {**row, "id": str(row["id"]), "exception_id": str(row["exception_id"])}
            )
        playbook_ids = {str(r["playbook_id"]) for r in runs.values()}
        playbook_ids |= {e.payload["playbook_id"] for e in batch.events if e.event_type == "PlaybookMatched"}
        definitions: dict[str, dict[int, dict]] = defaultdict(dict)
        for row in PlaybookStep.objects.filter(playbook_id__in=playbook_ids).values(
            "playbook_id", "position", "name", "action", "tool", "params", "condition"
        ):
            definitions[str(row["playbook_id"])][row["position"]] = row
        versions = {str(k): v for k, v in Playbook.objects.filter(id__in=playbook_ids).values_list("id", "version")}
        tools = {
            (name, version): (tool_id, max_attempts)
            for tool_id, name, version, max_attempts in Tool.objects.filter(tenant_id=batch.tenant_id).values_list(
                "id", "name", "version", "max_attempts"
            )
        }
        step_states: dict[str, dict[int, dict]] = defaultdict(dict)
        for row in PlaybookRunStep.objects.filter(run_id__in=[r["id"] for r in runs.values()]).values(
            "run_id", "position", "status", "tool_execution_id", "output", "started_at", "finished_at"
        ):
            step_states[str(row["run_id"])][row["position"]] = row
        for exception_id, run in runs.items():
            playbook_id = str(run["playbook_id"])
            run["playbook_id"] = playbook_id
            run["version"] = versions.get(playbook_id)
            run["steps"] = {
                position: {**definition, **step_states[run["id"]].get(position, {})}
                for position, definition in definitions[playbook_id].items()
            }
            for step in run["steps"].values():
                if step.get("tool_execution_id"):
                    step["tool_execution_id"] = str(step["tool_execution_id"])
            states[exception_id]["run"] = run
        batch.data.update(definitions=definitions, versions=versions, tools=tools)

    def evolve(self, batch, state, decision):
        super().evolve(batch, state, decision)
        if "run" in decision.state:
            state["run"] = decision.state["run"]

    # --- decisions -------------------------------------------------------------------------

    def decide(self, batch, state, event):
        if state.get("closed_at") is not None:
            return Decision()
        if event.event_type == "PlaybookMatched":
            return self._start(batch, state, event)
        current = state.get("run")
        if current is None or event.payload.get("run_id") != current["id"] or current["status"] not in ACTIVE:
            return Decision()  # for a superseded or finished run: nothing to do
        run = _Run(copy.deepcopy(current), batch.now)
        position = event.payload["position"]
        if position not in run.run["steps"]:
            return Decision()
        step = run.step(position)
        if event.event_type == "ToolExecutionCompleted" and step["status"] == "running":
            self._tool_completed(batch, state, run, position, event.payload)
        elif event.event_type == "ApprovalDecided" and step["status"] == "awaiting_approval":
            self._approval(batch, state, run, position, event.payload)
        elif event.event_type == "PlaybookTimerElapsed" and step["status"] == "running" and step["action"] == "wait":
            run.finish_step(position, "succeeded", {"waited": True})
            self._advance(batch, state, run, position + 1)
        else:
            return Decision()
        return self._decision(batch, run)

    def _start(self, batch, state, event):
        payload = event.payload
        previous = state.get("run")
        records = []
        if previous is not None and previous["status"] in ACTIVE:
            superseded = _Run(copy.deepcopy(previous), batch.now)
            superseded.run["status"] = "superseded"
            superseded.run["finished_at"] = batch.now
            records.extend(superseded.records(batch.tenant_id))
        definition = batch.data["definitions"].get(payload["playbook_id"], {})
        run = _Run(
            {
                "id": run_id_for(event.event_id),
                "exception_id": event.exception_id,
                "playbook_id": payload["playbook_id"],
                "version": batch.data["versions"].get(payload["playbook_id"], payload["playbook_version"]),
                "status": "running",
                "current_position": 0,
                "policy": {"requires_approval": payload["requires_approval"]},
                "started_at": batch.now,
                "finished_at": None,
                "steps": {
                    position: {
                        **spec,
                        "status": "pending",
                        "tool_execution_id": None,
                        "output": {},
                        "started_at": None,
                        "finished_at": None,
                    }
                    for position, spec in definition.items()
                },
            },
            batch.now,
        )
        run.changed_steps.update(run.run["steps"])
        self._advance(batch, state, run, 1)
        decision = self._decision(batch, run)
        decision.records[:0] = records
        return decision

    def _advance(self, batch, state, run: _Run, position: int) -> None:
        view = exception_view(run.run["exception_id"], state, run.run["policy"])
        steps = run.run["steps"]
        while position in steps:
            step = steps[position]
            run.run["current_position"] = position
            if not holds(step.get("condition"), view):
                run.set_step(position, status="skipped", finished_at=run.now)
                position += 1
                continue
            params = render(step.get("params") or {}, view)
            run.set_step(position, status="running", started_at=run.now)
            action = step["action"]
            if action in ("tool", "notify"):
                execution_id = execution_id_for(run.id, position)
                run.set_step(position, tool_execution_id=execution_id)
                self._request_tool(batch, run, position, execution_id, params)
                run.run["status"] = "running"
                run.exception["status"] = "in_progress"
                return
            run.emit.append(
                Emit.of(
                    StepExecutionRequested(
                        run_id=run.id, position=position, name=step["name"], action=action, params=params
                    )
                )
            )
            if action == "approval":
                run.set_step(position, status="awaiting_approval")
                run.run["status"] = "awaiting_approval"
                run.exception["status"] = "awaiting_approval"
                return
            if action == "wait":
                wake_at = run.now.timestamp() + float(params.get("seconds", 0))
                run.set_step(position, output={"wake_at": wake_at})
                run.run["status"] = "running"
                run.exception["status"] = "in_progress"
                return
            if action == "resolve":
                run.finish_step(position, "succeeded")
                run.end("succeeded")
                return
            if action == "escalate":
                run.finish_step(position, "succeeded")
                run.end("escalated", str(params.get("reason") or f"playbook step {step['name']} escalates"))
                return
            raise ValueError(f"unknown step action {action!r}")
        run.end("succeeded")

    def _request_tool(self, batch, run: _Run, position: int, execution_id: str, params: dict) -> None:
        from tools_app.models import ToolExecution

        step = run.step(position)
        tool_id, _ = batch.data["tools"].get((step["tool"], run.run["version"]), (None, None))
        run.emit.append(
            Emit.of(
                StepExecutionRequested(
                    run_id=run.id,
                    position=position,
                    name=step["name"],
                    action=step["action"],
                    params=params,
                    tool_execution_id=execution_id,
                )
            )
        )
        run.emit.append(
            Emit.of(
                ToolExecutionRequested(
                    execution_id=execution_id, tool=step["tool"], params=params, run_id=run.id, position=position
                )
            )
        )
        run.tool_executions.append(
            Upsert(
                ToolExecution,
                {
                    "id": execution_id,
                    "tenant_id": batch.tenant_id,
                    "exception_id": run.run["exception_id"],
                    "tool_id": tool_id,
                    "tool_name": step["tool"],
                    "status": "requested",
                    "request": {"params": params},
                    "requested_by": "playbook",
                    "requested_at": run.now,
                    "updated_at": run.now,
                },
            )
        )

    def _tool_completed(self, batch, state, run: _Run, position: int, payload: dict) -> None:
        step = run.step(position)
        if payload["status"] == "succeeded":
            run.finish_step(position, "succeeded", {"response": payload.get("response")})
            self._advance(batch, state, run, position + 1)
        elif step["action"] == "notify":
            # Notifications are best effort: a failed one is recorded and the playbook goes on.
            run.finish_step(position, "failed", {"error": payload.get("error", "")})
            self._advance(batch, state, run, position + 1)
        else:
            run.finish_step(position, "failed", {"error": payload.get("error", "")})
            run.end("failed", f"tool {step['tool']} {payload['status']}: {payload.get('error', '')}"[:500])

    def _approval(self, batch, state, run: _Run, position: int, payload: dict) -> None:
        output = {
            "decision": payload["decision"],
            "decided_by": payload.get("decided_by", ""),
            "comment": payload.get("comment", ""),
        }
        if payload["decision"] == "approve":
            run.finish_step(position, "succeeded", output)
            run.run["status"] = "running"
            run.exception["status"] = "in_progress"
            self._advance(batch, state, run, position + 1)
        else:
            run.finish_step(position, "rejected", output)
            run.end("rejected", f"step {run.step(position)['name']} rejected by {output['decided_by'] or 'a human'}")

    def _decision(self, batch, run: _Run) -> Decision:
        records = run.records(batch.tenant_id) + run.tool_executions
        return Decision(emit=run.emit, exception=run.exception, records=records, state={"run": run.run})


AGENT = PlaybookAgent()
