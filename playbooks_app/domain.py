"""Playbook runs as plain data, importable without Django: the step actions, run and step statuses
(the models build their choices from these enums) and the run state the selector loads and the
playbook agent decides on."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class StepAction(StrEnum):
    TOOL = "tool"
    APPROVAL = "approval"
    NOTIFY = "notify"
    WAIT = "wait"
    RESOLVE = "resolve"
    ESCALATE = "escalate"


class RunStatus(StrEnum):
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    COMPLETED = "completed"
    FAILED = "failed"
    REJECTED = "rejected"
    ESCALATED = "escalated"
    SUPERSEDED = "superseded"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    SKIPPED = "skipped"


class RunOutcome(StrEnum):
    """How a run ended, as PlaybookCompleted reports it."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    ESCALATED = "escalated"

    @property
    def run_status(self) -> RunStatus:
        return RunStatus.COMPLETED if self is RunOutcome.SUCCEEDED else RunStatus(self.value)


# A run in one of these still waits for events; any other status is final.
ACTIVE_RUN_STATUSES = frozenset({RunStatus.RUNNING, RunStatus.AWAITING_APPROVAL})


@dataclass(frozen=True, slots=True)
class StepDefinition:
    """A step of a playbook version (immutable, like the version)."""

    position: int
    name: str
    action: StepAction
    tool: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    condition: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class StepState:
    """A step of one run: its definition and how far it got."""

    definition: StepDefinition
    status: StepStatus = StepStatus.PENDING
    tool_execution_id: str | None = None
    output: dict[str, Any] = field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def copy(self) -> StepState:
        """A copy to change: the definition is immutable and shared; decisions replace `output`."""
        return StepState(
            self.definition, self.status, self.tool_execution_id, dict(self.output), self.started_at, self.finished_at
        )


@dataclass(slots=True)
class RunState:
    """A run of a playbook version for one exception, with its steps by position."""

    id: str
    exception_id: str
    playbook_id: str
    version: int | None
    status: RunStatus
    current_position: int
    policy: dict[str, Any]
    started_at: datetime
    finished_at: datetime | None
    steps: dict[int, StepState]

    def copy(self) -> RunState:
        """A copy a decision can change while the loaded state stays as it was (copy.deepcopy would
        also copy every step definition: a seventh of the playbook worker's time)."""
        return RunState(
            self.id,
            self.exception_id,
            self.playbook_id,
            self.version,
            self.status,
            self.current_position,
            dict(self.policy),
            self.started_at,
            self.finished_at,
            {position: step.copy() for position, step in self.steps.items()},
        )


@dataclass(frozen=True, slots=True)
class PlaybookBatchState:
    """What the playbook agent decides a batch on: each exception's current run (the latest one not
    superseded), the steps and version of every playbook concerned, and the tenant's tools."""

    runs: dict[str, RunState]
    definitions: dict[str, dict[int, StepDefinition]]
    versions: dict[str, int]
    # (tool name, version) -> tool id
    tool_ids: dict[tuple[str, int], str]
