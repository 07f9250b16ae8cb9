"""Reads of tool executions (projection only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tools_app.models import ToolExecution

FIELDS = (
    "id",
    "tenant_id",
    "exception_id",
    "tool_name",
    "status",
    "attempts",
    "request",
    "response",
    "error",
    "requested_by",
    "requested_at",
    "started_at",
    "finished_at",
    "updated_at",
)


def _shape(row: dict[str, Any]) -> dict[str, Any]:
    shaped = dict(row)
    shaped["execution_id"] = shaped.pop("id")
    shaped["tool"] = shaped.pop("tool_name")
    return shaped


def execution_page(*, tenant_id: str | None, filters: dict[str, Any], after: dict[str, Any] | None, limit: int):
    """Newest first by keyset (requested_at, id). `tenant_id` None: every tenant the scope shows
    (operators); a tenant's own listing names it, so its (tenant, ...) indexes serve the query."""
    qs = ToolExecution.objects.all() if tenant_id is None else ToolExecution.objects.filter(tenant_id=tenant_id)
    if filters.get("exception_id"):
        qs = qs.filter(exception_id=filters["exception_id"])
    if filters.get("tool"):
        qs = qs.filter(tool_name=filters["tool"])
    if filters.get("status"):
        qs = qs.filter(status=filters["status"])
    if after is not None:
        qs = qs.extra(
            where=["(tool_execution.requested_at, tool_execution.id) < (%s, %s)"], params=[after["c"], after["i"]]
        )
    rows = list(qs.order_by("-requested_at", "-id").values(*FIELDS)[: limit + 1])
    position = None
    if len(rows) > limit:
        rows = rows[:limit]
        position = {"c": rows[-1]["requested_at"].isoformat(), "i": str(rows[-1]["id"])}
    return [_shape(r) for r in rows], position


def execution_get(*, execution_id: str) -> dict[str, Any] | None:
    row = ToolExecution.objects.filter(id=execution_id).values(*FIELDS).first()
    return _shape(row) if row else None


def parse_position(position: dict[str, Any]) -> dict[str, Any]:
    return {"c": datetime.fromisoformat(position["c"]), "i": str(position["i"])}
