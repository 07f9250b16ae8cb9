"""Stuck work, for operators: what has waited longer than it should, and re-driving it.

- outbox batches not consumed after a threshold (the relay re-sends never-published batches by
  itself; a published batch waits for its queue to drain before the relay assumes it lost);
- events parked behind a predecessor for longer than a threshold;
- tool executions `running` for longer than a threshold (the worker holding the call died and the
  message was dead-lettered by the broker, say).
Re-driving is always safe: consumers are idempotent and tool calls carry their idempotency key.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from django.utils import timezone

from sentinai.eventstore import outbox, store
from sentinai.models import ExceptionEvent, Outbox, ParkedEvent, ProcessedEvent
from sentinai.tenancy.scope import all_tenants_scope, tenant_scope

DEFAULT_THRESHOLD_SECONDS = 300


def _before(seconds: float):
    return timezone.now() - timedelta(seconds=seconds)


def stuck_outbox_all_tenants(older_than: float = DEFAULT_THRESHOLD_SECONDS):
    with all_tenants_scope():
        return list(Outbox.objects.filter(created_at__lt=_before(older_than)).order_by("created_at"))


def redrive_outbox_all_tenants(ids: list[int]) -> int:
    """Publish these outbox batches again now (whatever the relay would have waited for)."""
    with all_tenants_scope():
        rows = [
            store.OutboxRow(id=r.id, tenant_id=r.tenant_id, queue=r.queue, event_ids=tuple(r.event_ids))
            for r in Outbox.objects.filter(id__in=ids)
        ]
        if not rows:
            return 0
        sent = outbox._send(rows, outbox._missing_envelopes(rows, {}))
        outbox._mark_published(sent)
    return len(sent)


def stuck_parked_all_tenants(older_than: float = DEFAULT_THRESHOLD_SECONDS):
    with all_tenants_scope():
        return list(ParkedEvent.objects.filter(parked_at__lt=_before(older_than)).order_by("parked_at"))


def reoffer_parked_all_tenants(ids: list[int]) -> int:
    """Offer parked events to their agent again; one still blocked by its predecessor parks again."""
    with all_tenants_scope():
        rows = list(ParkedEvent.objects.filter(id__in=ids).values_list("id", "tenant_id", "consumer", "event_id"))
        ParkedEvent.objects.filter(id__in=[r[0] for r in rows]).delete()
        grouped: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for _, tenant_id, consumer, event_id in rows:
            grouped[tenant_id][consumer].append(str(event_id))
        for tenant_id, by_consumer in grouped.items():
            store.offer(tenant_id, by_consumer)
    return len(rows)


def stuck_tool_executions_all_tenants(older_than: float = DEFAULT_THRESHOLD_SECONDS):
    from tools_app.models import ExecutionStatus, ToolExecution

    with all_tenants_scope():
        return list(
            ToolExecution.objects.filter(status=ExecutionStatus.RUNNING, updated_at__lt=_before(older_than)).order_by(
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
            store.offer(execution.tenant_id, {"tool": [str(event_id)]})
            count += 1
    return count
