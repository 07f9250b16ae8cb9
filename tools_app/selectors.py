"""Reads of tools and tool executions (projection only)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from django.db.models import Max

from sentinai.kernel import bulk
from sentinai.kernel.bulk import keyset_before
from sentinai.kernel.cache import TTLCache
from sentinai.models import Tenant
from tools_app.models import ExecutionStatus, Tool, ToolExecution

# Tool rows the agents read every batch, per process, keyed by the bound definitions' version
# (_bound_version: a newly bound pack version or changed overrides give new keys).
_definitions: TTLCache[Any] = TTLCache(ttl=600.0, maxsize=20_000)

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
        qs = qs.filter(keyset_before("requested_at", "id", after["c"], after["i"]))
    rows = list(qs.order_by("-requested_at", "-id").values(*FIELDS)[: limit + 1])
    position = None
    if len(rows) > limit:
        rows = rows[:limit]
        position = {"c": rows[-1]["requested_at"].isoformat(), "i": str(rows[-1]["id"])}
    return [_shape(r) for r in rows], position


def execution_get(*, tenant_id: str | None, execution_id: str) -> dict[str, Any] | None:
    """The execution, if it is `tenant_id`'s (None: any tenant's, for operators)."""
    qs = ToolExecution.objects.filter(id=execution_id)
    if tenant_id is not None:
        qs = qs.filter(tenant_id=tenant_id)
    row = qs.values(*FIELDS).first()
    return _shape(row) if row else None


def parse_position(position: dict[str, Any]) -> dict[str, Any]:
    return {"c": datetime.fromisoformat(position["c"]), "i": str(position["i"])}


# --- loaders of the agents (plain data, for decisions) ------------------------------------------


def _bound_version(tenant: Tenant) -> tuple:
    """The version check of the definitions cache, one index lookup: the tool version bound to the
    tenant now (binding activates a pack version's rows in one transaction) and its row's last change
    (overrides update tool rows in place)."""
    if bulk.is_postgres():  # the ORM's aggregate took longer to build than the lookup to run
        bound = bulk.select("SELECT max(version) FROM tool WHERE tenant_id = %s AND is_active", [tenant.id])[0][0]
    else:
        bound = Tool.objects.filter(tenant_id=tenant.id, is_active=True).aggregate(v=Max("version"))["v"]
    return (tenant.id, bound, tenant.updated_at)


def auto_approved_tool_names(*, tenant: Tenant) -> set[str]:
    """The tenant's active tools that may run without a human (policy guardrail)."""
    return _definitions.get_or_load(
        ("auto", _bound_version(tenant)),
        lambda: set(
            Tool.objects.filter(tenant_id=tenant.id, is_active=True, auto_approved=True).values_list("name", flat=True)
        ),
    )


def failed_execution_counts(*, tenant_id: str, exception_ids: list[str]) -> Counter[str]:
    """How many executions of each exception failed or were dead-lettered (by the
    tool_execution_exception index, which the tenant leads)."""
    failed = [ExecutionStatus.FAILED.value, ExecutionStatus.DEAD_LETTERED.value]
    if bulk.is_postgres():
        return Counter(
            row[0]
            for row in bulk.select(
                f"SELECT exception_id FROM tool_execution WHERE tenant_id = %s AND exception_id {bulk.ANY_UUIDS} "
                "AND status = ANY(%s)",
                [tenant_id, bulk.uuid_list(exception_ids), failed],
            )
        )
    return Counter(
        str(x)
        for x in ToolExecution.objects.filter(
            tenant_id=tenant_id, exception_id__in=exception_ids, status__in=failed
        ).values_list("exception_id", flat=True)
    )


def tool_run_configs(*, tenant: Tenant, tool_ids: list[int]) -> dict[int, dict[str, Any]]:
    """What running each tool needs: its kind, config and attempt limit (per process, for the bound
    definitions' version: overrides such as a tenant's webhook URL update tool rows in place)."""
    version = _bound_version(tenant)
    configs = {
        i: c
        for i in set(tool_ids)
        if (c := _definitions.get_or_load(("run", version, i), lambda: None, keep_none=False))
    }
    missing = [i for i in set(tool_ids) if i not in configs]
    if missing:
        for row in Tool.objects.filter(id__in=missing).values("id", "kind", "config", "max_attempts"):
            configs[row["id"]] = _definitions.get_or_load(("run", version, row["id"]), lambda r=row: r)
    return configs


def execution_statuses(*, execution_ids: list[str]) -> dict[str, str]:
    return {
        str(r["id"]): r["status"] for r in ToolExecution.objects.filter(id__in=execution_ids).values("id", "status")
    }
