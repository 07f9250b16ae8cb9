"""Write services of tools: requesting an execution (the tool agent performs it)."""

from __future__ import annotations

from typing import Any

from exceptions_app.services import ExceptionNotFound
from sentinai.eventstore import store
from sentinai.kernel import ids
from tools_app.models import ExecutionStatus, Tool, ToolExecution


class UnknownTool(LookupError):
    pass


def tool_for(tenant_id: str, name: str) -> Tool | None:
    """The latest active version of a tenant's tool."""
    return Tool.objects.filter(tenant_id=tenant_id, name=name, is_active=True).order_by("-version").first()


def tool_execution_request(
    *, tenant_id: str, exception_id: str, tool_name: str, params: dict[str, Any], requested_by: str
) -> tuple[ToolExecution, store.Envelope]:
    """Create a requested execution and its ToolExecutionRequested event, in the caller's transaction.
    The execution id is the idempotency key of every attempt the tool agent makes."""
    tool = tool_for(tenant_id, tool_name)
    if tool is None:
        raise UnknownTool(tool_name)
    streams = store.lock_streams(tenant_id, [exception_id])
    if exception_id not in streams:
        raise ExceptionNotFound(exception_id)
    execution = ToolExecution.objects.create(
        id=ids.new_id(),
        tenant_id=tenant_id,
        exception_id=exception_id,
        tool=tool,
        tool_name=tool.name,
        status=ExecutionStatus.REQUESTED,
        request={"params": params},
        requested_by=requested_by,
    )
    event = store.NewEvent(
        exception_id, "ToolExecutionRequested", {"execution_id": str(execution.id), "tool": tool.name, "params": params}
    )
    (envelope,) = store.append(tenant_id=tenant_id, events=[event], producer="api", streams=streams)
    return execution, envelope
