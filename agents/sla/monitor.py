"""The SLA monitor's I/O: find open exceptions due an SLA event, lock them, append the events.

Exactly once, even with two scans racing or a scheduler restart: candidates are locked with
SKIP LOCKED and re-read under the lock, the `*_sent` flags are set in the same transaction as the
append, and the events carry deterministic ids.
"""

from __future__ import annotations

from collections import defaultdict

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from agents.sla.logic import due_events
from exceptions_app.models import ExceptionRecord
from sentinai import store
from sentinai.events import EVENT_NAMESPACE
from sentinai.tenancy import all_tenants_scope, tenant_scope

STATE_FIELDS = ("severity", "sla_due_at", "sla_imminent_at", "sla_imminent_sent", "sla_expired_sent", "closed_at")


def _candidates_all_tenants(limit: int) -> dict[str, list[str]]:
    now = timezone.now()
    due = Q(closed_at__isnull=True) & (
        Q(sla_imminent_sent=False, sla_imminent_at__lte=now) | Q(sla_expired_sent=False, sla_due_at__lte=now)
    )
    with all_tenants_scope():
        rows = ExceptionRecord.objects.filter(due).values_list("tenant_id", "id")[:limit]
        grouped: dict[str, list[str]] = defaultdict(list)
        for tenant_id, exception_id in rows:
            grouped[tenant_id].append(str(exception_id))
    return grouped


def scan_all_tenants(limit: int = 5000) -> dict:
    fraction = settings.SENTINAI["SLA_IMMINENT_FRACTION"]
    announced = 0
    for tenant_id, ids in _candidates_all_tenants(limit).items():
        with tenant_scope(tenant_id):
            now = timezone.now()
            streams = store.lock_streams(tenant_id, ids, STATE_FIELDS)
            new_events = []
            for exception_id, stream in streams.items():
                for payload in due_events(stream.fields, now, fraction):
                    kind = "imminent" if payload.event_type == "SLAImminent" else "expired"
                    stream.changes[f"sla_{kind}_sent"] = True
                    new_events.append(
                        store.NewEvent(
                            exception_id=exception_id,
                            event_type=payload.event_type,
                            payload=payload,
                            event_id=ids.uuid5(EVENT_NAMESPACE, f"sla:{exception_id}:{kind}"),
                        )
                    )
            envelopes = store.stage(tenant_id, streams, new_events, producer="sla")
            store.write_events(tenant_id, envelopes)
            store.write_streams(streams.values())
            announced += len(envelopes)
    return {"announced": announced}
