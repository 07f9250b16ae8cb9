"""The operations overview (admin, "Operations overview"): what an operator checks first, read from the
projections, the delivery tables and the broker's queue counters - never by asking an agent.

Every section crosses tenants on purpose (an operator's page) and is bounded: group-by counts, the
dead letters still open, the SLA expiries of the last hour (a BRIN-indexed range of the event store).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db.models import BooleanField, Count, ExpressionWrapper, Max, Min, Q
from django.utils import timezone

from sentinai.eventstore import store
from sentinai.kernel import metrics
from sentinai.models import DeadLetter, ExceptionEvent, Outbox
from sentinai.tenancy.scope import all_tenants_scope

logger = logging.getLogger(__name__)

SLA_WINDOW = timedelta(hours=1)


@dataclass
class Overview:
    # tenant -> status -> severity -> count; and the column headings
    exceptions: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    severities: list[str] = field(default_factory=list)
    # agent -> {"open": n, "replayed": n, "oldest": datetime}
    dead_letters: dict[str, dict[str, Any]] = field(default_factory=dict)
    # queue -> {"published": n, "unpublished": n, "oldest_seconds": s}
    outbox: dict[str, dict[str, Any]] = field(default_factory=dict)
    # agent queue -> {"ready": n, "consumers": n, "queues": broker queues (lanes)}; None when the broker did not answer
    queues: dict[str, dict[str, int]] | None = None
    queues_error: str = ""
    # tenant -> SLAExpired events in the last hour; and SLAImminent
    sla_expired: dict[str, int] = field(default_factory=dict)
    sla_imminent: dict[str, int] = field(default_factory=dict)
    generated_at: Any = None

    @property
    def exception_rows(self) -> list[tuple[str, str, list[int]]]:
        """(tenant, status, counts in the order of `severities`), for the table."""
        return [
            (tenant, status, [by_severity.get(s, 0) for s in self.severities])
            for tenant, statuses in self.exceptions.items()
            for status, by_severity in statuses.items()
        ]

    @property
    def sla_rows(self) -> list[tuple[str, int, int]]:
        tenants = sorted(set(self.sla_expired) | set(self.sla_imminent))
        return [(t, self.sla_expired.get(t, 0), self.sla_imminent.get(t, 0)) for t in tenants]


def overview_all_tenants() -> Overview:
    view = Overview(generated_at=timezone.now())
    with all_tenants_scope():
        rows = (
            store.projection()
            .objects.values_list("tenant_id", "status", "severity")
            .annotate(n=Count("pk"))
            .order_by("tenant_id", "status", "severity")
        )
        severities: set[str] = set()
        exceptions: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
        for tenant_id, status, severity, n in rows:
            severity = severity or "-"
            severities.add(severity)
            exceptions[tenant_id][status][severity] = n
        order = ["critical", "high", "medium", "low"]
        view.severities = sorted(severities, key=lambda s: (order.index(s) if s in order else len(order), s))
        view.exceptions = {t: dict(s) for t, s in exceptions.items()}

        for consumer, status, n, oldest in (
            DeadLetter.objects.exclude(status=DeadLetter.Status.DISCARDED)
            .values_list("consumer", "status")
            .annotate(n=Count("pk"), oldest=Min("created_at"))
            .order_by("consumer")
        ):
            entry = view.dead_letters.setdefault(consumer or "-", {"open": 0, "replayed": 0, "oldest": None})
            entry[status] = entry.get(status, 0) + n
            if status == DeadLetter.Status.OPEN:
                entry["oldest"] = oldest

        since = view.generated_at - SLA_WINDOW
        for event_type, tenant_id, n, _last in (
            ExceptionEvent.objects.filter(event_type__in=("SLAExpired", "SLAImminent"), recorded_at__gte=since)
            .values_list("event_type", "tenant_id")
            .annotate(n=Count("pk"), last=Max("recorded_at"))
            .order_by("tenant_id")
        ):
            target = view.sla_expired if event_type == "SLAExpired" else view.sla_imminent
            target[tenant_id] = n

        for queue, unpublished, count, oldest in (
            Outbox.objects.values_list("queue", ExpressionWrapper(Q(published_at__isnull=True), BooleanField()))
            .annotate(n=Count("pk"), oldest=Min("created_at"))
            .order_by("queue")
        ):
            entry = view.outbox.setdefault(queue, {"published": 0, "unpublished": 0, "oldest_seconds": 0.0})
            entry["unpublished" if unpublished else "published"] += count
            age = max(0.0, (view.generated_at - oldest).total_seconds())
            entry["oldest_seconds"] = max(entry["oldest_seconds"], round(age, 1))
    try:
        # Per agent: an agent's lanes (<agent>.<lane>) are summed.
        queues: dict[str, dict[str, int]] = {}
        for name, (ready, consumers) in metrics.queue_stats().items():
            entry = queues.setdefault(name.split(".", 1)[0], {"ready": 0, "consumers": 0, "queues": 0})
            entry["ready"] += ready
            entry["consumers"] += consumers
            entry["queues"] += 1
        view.queues = queues
    except Exception as exc:  # the page still shows what the database knows
        logger.warning("queue depths unavailable: %s", exc)
        view.queues_error = f"{type(exc).__name__}: {exc}"
    return view
