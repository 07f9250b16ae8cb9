"""Stuck work, for operators: what has waited longer than it should, and re-driving it.

- outbox batches not consumed after a threshold (the relay re-sends never-published batches by
  itself; a published batch waits for its queue to drain before the relay assumes it lost);
- events parked behind a predecessor for longer than a threshold;
- tool executions `running` for longer than a threshold (the worker holding the call died and the
  message was dead-lettered by the broker, say).
Re-driving is always safe: consumers are idempotent and tool calls carry their idempotency key.

The core knows the first two; an app registers its own kinds (tools_app: running tool executions) in
its AppConfig.ready(), and operators' tools (the admin, `manage.py redrive_stuck_work`) go through
`kinds()`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.utils import timezone

from sentinai.eventstore import outbox
from sentinai.models import Outbox, ParkedEvent
from sentinai.tenancy.scope import all_tenants_scope

DEFAULT_THRESHOLD_SECONDS = 300


def before(seconds: float):
    """The moment `seconds` ago: rows last touched before it count as stuck."""
    return timezone.now() - timedelta(seconds=seconds)


@dataclass(frozen=True, slots=True)
class StuckKind:
    """A kind of work that can get stuck: how to find it (all tenants), say it, and re-drive it."""

    label: str  # "outbox batches": the listing's noun
    find: Callable[[float], list[Any]]
    describe: Callable[[Any], str]
    redrive: Callable[[list[Any]], int]


_KINDS: dict[str, StuckKind] = {}


def register(kind: StuckKind) -> None:
    _KINDS[kind.label] = kind


def kinds() -> list[StuckKind]:
    return list(_KINDS.values())


def stuck_outbox_all_tenants(older_than: float = DEFAULT_THRESHOLD_SECONDS):
    with all_tenants_scope():
        return list(Outbox.objects.filter(created_at__lt=before(older_than)).order_by("created_at"))


def redrive_outbox_all_tenants(ids: list[int]) -> int:
    """Publish these outbox batches again now (whatever the relay would have waited for)."""
    with all_tenants_scope():
        return outbox.redrive(list(Outbox.objects.filter(id__in=ids)))


def stuck_parked_all_tenants(older_than: float = DEFAULT_THRESHOLD_SECONDS):
    with all_tenants_scope():
        return list(ParkedEvent.objects.filter(parked_at__lt=before(older_than)).order_by("parked_at"))


def reoffer_parked_all_tenants(ids: list[int]) -> int:
    """Offer parked events to their agent again; one still blocked by its predecessor parks again."""
    with all_tenants_scope():
        rows = list(ParkedEvent.objects.filter(id__in=ids).values_list("id", "tenant_id", "consumer", "event_id"))
        ParkedEvent.objects.filter(id__in=[r[0] for r in rows]).delete()
        grouped: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for _, tenant_id, consumer, event_id in rows:
            grouped[tenant_id][consumer].append(str(event_id))
        for tenant_id, by_consumer in grouped.items():
            outbox.offer(tenant_id, by_consumer)
    return len(rows)


register(
    StuckKind(
        label="outbox batches",
        find=stuck_outbox_all_tenants,
        describe=lambda r: (
            f"outbox #{r.id} {r.tenant_id} -> {r.queue}: {len(r.event_ids)} events, created {r.created_at:%Y-%m-%d %H:%M:%S}"
        ),
        redrive=lambda rows: redrive_outbox_all_tenants([r.id for r in rows]),
    )
)
register(
    StuckKind(
        label="parked events",
        find=stuck_parked_all_tenants,
        describe=lambda r: f"parked {r.consumer} {r.event_id} ({r.tenant_id}) waits for {r.waiting_for}",
        redrive=lambda rows: reoffer_parked_all_tenants([r.id for r in rows]),
    )
)
