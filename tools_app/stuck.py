"""Tool executions stuck `running` (the worker holding the call died and the broker dead-lettered its
message, say): found and re-driven for operators. Registered with the core's stuck work (apps.py)."""

from __future__ import annotations

from sentinai.eventstore import outbox
from sentinai.models import ExceptionEvent, ProcessedEvent
from sentinai.ops.stuck import DEFAULT_THRESHOLD_SECONDS, StuckKind, before
from sentinai.tenancy.scope import all_tenants_scope, tenant_scope
from tools_app.models import ExecutionStatus, ToolExecution


def stuck_tool_executions_all_tenants(older_than: float = DEFAULT_THRESHOLD_SECONDS) -> list[ToolExecution]:
    with all_tenants_scope():
        return list(
            ToolExecution.objects.filter(status=ExecutionStatus.RUNNING, updated_at__lt=before(older_than)).order_by(
                "updated_at"
            )
        )


def redrive_tool_executions(executions) -> int:
    """Offer each execution's ToolExecutionRequested to the tool agent again (same idempotency key)."""
    count = 0
    for execution in executions:
        with tenant_scope(execution.tenant_id):
            event_id = (
                ExceptionEvent.objects.filter(
                    exception_id=execution.exception_id,
                    event_type="ToolExecutionRequested",
                    payload__execution_id=str(execution.id),
                )
                .values_list("event_id", flat=True)
                .first()
            )
            if event_id is None:
                continue
            ProcessedEvent.objects.of("tool", [str(event_id)]).delete()
            outbox.offer(execution.tenant_id, {"tool": [str(event_id)]})
            count += 1
    return count


RUNNING_EXECUTIONS = StuckKind(
    label="tool executions running",
    find=stuck_tool_executions_all_tenants,
    describe=lambda e: f"tool {e.tool_name} {e.id} ({e.tenant_id}) running since {e.updated_at:%Y-%m-%d %H:%M:%S}",
    redrive=redrive_tool_executions,
)
