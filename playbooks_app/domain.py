"""Playbook runs as plain data, importable without Django: the step actions and the run and step
statuses (the models build their choices from these enums)."""

from __future__ import annotations

from enum import StrEnum


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
