"""What the scheduler does every tick, for all tenants: relay the outbox, re-offer due retries, and
re-offer parked events whose predecessor was applied without releasing them (a safety net)."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone

from sentinai.eventstore import outbox
from sentinai.models import EventAttempt, ParkedEvent, ProcessedEvent
from sentinai.tenancy.scope import all_tenants_scope


def offer_due_retries_all_tenants(limit: int = 2000) -> int:
    with all_tenants_scope():
        due = list(
            EventAttempt.objects.select_for_update(skip_locked=True)
            .filter(state=EventAttempt.State.SCHEDULED, next_attempt_at__lte=timezone.now())
            .order_by("next_attempt_at")
            .values_list("id", "tenant_id", "consumer", "event_id")[:limit]
        )
        if not due:
            return 0
        _offer_grouped((tenant, consumer, event_id) for _, tenant, consumer, event_id in due)
        EventAttempt.objects.filter(id__in=[row[0] for row in due]).update(state=EventAttempt.State.OFFERED)
    return len(due)


def recheck_parked_all_tenants(limit: int = 2000) -> int:
    older_than = timezone.now() - timedelta(seconds=settings.SENTINAI["PARKED_RECHECK_SECONDS"])
    predecessor_applied = ProcessedEvent.objects.filter(pk=OuterRef("waiting_key"))
    with all_tenants_scope():
        stale = list(
            ParkedEvent.objects.select_for_update(skip_locked=True)
            .filter(parked_at__lt=older_than)
            .filter(Exists(predecessor_applied))
            .values_list("id", "tenant_id", "consumer", "event_id")[:limit]
        )
        if not stale:
            return 0
        ParkedEvent.objects.filter(id__in=[row[0] for row in stale]).delete()
        _offer_grouped((tenant, consumer, event_id) for _, tenant, consumer, event_id in stale)
    return len(stale)


def _offer_grouped(rows) -> None:
    grouped: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for tenant_id, consumer, event_id in rows:
        grouped[tenant_id][consumer].append(str(event_id))
    for tenant_id, by_consumer in grouped.items():
        outbox.offer(tenant_id, by_consumer)


def tick_all_tenants() -> dict:
    return {
        "relayed": outbox.relay_all_tenants(),
        "retries_offered": offer_due_retries_all_tenants(),
        "parked_reoffered": recheck_parked_all_tenants(),
    }
