"""Reading stored events back as envelopes: for the outbox relay, retries, replays and re-drives."""

from __future__ import annotations

from collections.abc import Iterable

from sentinai.eventstore.events import Envelope
from sentinai.models import ExceptionEvent


def load_envelopes(tenant_id: str, event_ids: Iterable[str]) -> dict[str, Envelope]:
    """Read stored events (for the relay, retries and replays)."""
    wanted = list(event_ids)
    if not wanted:
        return {}
    rows = ExceptionEvent.objects.filter(tenant_id=tenant_id, event_id__in=wanted).values_list(
        "event_id",
        "event_type",
        "exception_id",
        "sequence",
        "causation_id",
        "producer",
        "payload",
        "schema_version",
        "metadata",
        "recorded_at",
    )
    envelopes = {}
    for row in rows:
        envelope = Envelope(
            event_id=str(row[0]),
            event_type=row[1],
            tenant_id=tenant_id,
            exception_id=str(row[2]),
            sequence=row[3],
            causation_id=str(row[4]) if row[4] else None,
            producer=row[5],
            payload=row[6],
            schema_version=row[7],
            metadata=row[8] or {},
            recorded_at=row[9],
        )
        envelopes[envelope.event_id] = envelope
    return envelopes
