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
from sentinai.eventstore import store
from sentinai.eventstore.events import EVENT_NAMESPACE
from sentinai.kernel import ids, metrics
from sentinai.tenancy.scope import all_tenants_scope, tenant_scope

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
    for tenant_id, exception_ids in _candidates_all_tenants(limit).items():
        with tenant_scope(tenant_id):
            now = timezone.now()
            streams = store.lock_streams(tenant_id, exception_ids, STATE_FIELDS)
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
            envelopes = store.append(tenant_id=tenant_id, events=new_events, producer="sla", streams=streams)
            announced += len(envelopes)
        for envelope in envelopes:
            kind = "imminent" if envelope.event_type == "SLAImminent" else "expired"
            metrics.SLA_EVENTS.labels(kind, envelope.payload.get("severity") or "unknown").inc()
    return {"announced": announced}


def timers_all_tenants(limit: int = 5000) -> int:
    """Announce PlaybookTimerElapsed for `wait` steps whose time is up. The event id is derived from the
    run step and checked under the stream lock, so a timer fires once however often scans run."""
    from playbooks_app.models import PlaybookRunStep
    from sentinai.models import ExceptionEvent

    now = timezone.now()
    with all_tenants_scope():
        due = list(
            PlaybookRunStep.objects.filter(
                action="wait", status="running", output__wake_at__lte=now.timestamp()
            ).values_list("tenant_id", "run__exception_id", "run_id", "position")[:limit]
        )
    by_tenant: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    for tenant_id, exception_id, run_id, position in due:
        by_tenant[tenant_id].append((str(exception_id), str(run_id), position))
    fired = 0
    for tenant_id, timers in by_tenant.items():
        with tenant_scope(tenant_id):
            streams = store.lock_streams(tenant_id, [t[0] for t in timers])
            candidates = {
                ids.uuid5(EVENT_NAMESPACE, f"timer:{run_id}:{position}"): (exception_id, run_id, position)
                for exception_id, run_id, position in timers
                if exception_id in streams
            }
            existing = {
                str(i)
                for i in ExceptionEvent.objects.filter(event_id__in=list(candidates)).values_list("event_id", flat=True)
            }
            new_events = [
                store.NewEvent(
                    exception_id, "PlaybookTimerElapsed", {"run_id": run_id, "position": position}, event_id=event_id
                )
                for event_id, (exception_id, run_id, position) in candidates.items()
                if event_id not in existing
            ]
            envelopes = store.append(tenant_id=tenant_id, events=new_events, producer="sla", streams=streams)
            fired += len(envelopes)
    return fired
