"""Reads of playbooks and playbook runs (projections only)."""

from __future__ import annotations

from typing import Any

from exceptions_app.selectors import exception_events
from playbooks_app.models import Playbook, PlaybookRun, PlaybookRunStep, PlaybookStep

PLAYBOOK_EVENTS = (
    "PolicyEvaluationCompleted",
    "PlaybookMatched",
    "PlaybookRecalculationRequested",
    "StepExecutionRequested",
    "StepExecutionCompleted",
    "ApprovalDecided",
    "ToolExecutionRequested",
    "ToolExecutionCompleted",
    "PlaybookCompleted",
    "EscalationRequested",
)


def playbook_get(*, playbook_id: str) -> dict[str, Any] | None:
    playbook = (
        Playbook.objects.filter(id=playbook_id)
        .values(
            "id",
            "tenant_id",
            "pack",
            "pack_version",
            "name",
            "version",
            "description",
            "match",
            "priority",
            "is_active",
            "created_at",
        )
        .first()
    )
    if playbook is None:
        return None
    playbook["steps"] = list(
        PlaybookStep.objects.filter(playbook_id=playbook_id)
        .order_by("position")
        .values("position", "name", "action", "tool", "params")
    )
    return playbook


def exception_playbook_view(*, tenant_id: str, exception_id: str) -> dict[str, Any]:
    """The exception's current (latest) playbook run: the playbook version it runs, its status, its step
    states, and the events of the exception that concern playbooks."""
    run = (
        PlaybookRun.objects.filter(tenant_id=tenant_id, exception_id=exception_id)
        .order_by("-started_at")
        .values("id", "playbook_id", "status", "current_position", "started_at", "finished_at")
        .first()
    )
    events = exception_events(exception_id=exception_id, types=PLAYBOOK_EVENTS)
    if run is None:
        return {"run_id": None, "playbook": None, "status": "none", "steps": [], "events": events}
    playbook = Playbook.objects.filter(id=run["playbook_id"]).values("id", "name", "version").first()
    steps = list(
        PlaybookRunStep.objects.filter(run_id=run["id"])
        .order_by("position")
        .values("position", "name", "action", "status", "tool_execution_id", "output", "started_at", "finished_at")
    )
    return {
        "run_id": run["id"],
        "playbook": playbook,
        "status": run["status"],
        "current_position": run["current_position"],
        "started_at": run["started_at"],
        "finished_at": run["finished_at"],
        "steps": steps,
        "events": events,
    }
