"""The event store. `append` is the only way to emit an event.

An append, inside the caller's transaction:
1. locks the exception rows of the events (sorted, so concurrent appends cannot deadlock) and takes
   the next gap-free per-exception `sequence`;
2. records, for each agent subscribed to the event type, the previous event of the same exception
   that agent must apply first (`metadata.prev`) - the consumer framework's ordering gate;
3. inserts the events and one outbox row per subscribed agent queue (a batch of event ids);
4. registers the publication of those outbox rows for after the commit.

Handlers use the same steps through `lock_streams` / `stage` / `write_events` / `write_streams`,
because they already hold the exception locks for their whole batch.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson
from django.conf import settings
from django.db import connection, transaction

from exceptions_app.models import ExceptionRecord
from sentinai import bulk
from sentinai.events import CATALOGUE, Envelope, EventPayload, subscribers, validate_payload
from sentinai.models import ExceptionEvent, Outbox


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append. Handlers pass a deterministic `event_id` (events.derived_event_id)."""

    exception_id: uuid.UUID
    event_type: str
    payload: dict[str, Any] | EventPayload
    causation_id: uuid.UUID | None = None
    event_id: uuid.UUID | None = None


@dataclass(slots=True)
class Stream:
    """The locked head of one exception's event stream, plus the projection fields a handler asked
    for. `changes` are projection updates written together with the new head."""

    exception_id: uuid.UUID
    last_sequence: int
    heads: dict[str, str]
    fields: dict[str, Any]
    changes: dict[str, Any] = field(default_factory=dict)
    appended: bool = False


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    tenant_id: str
    queue: str
    event_ids: tuple[uuid.UUID, ...]


class StreamNotFound(LookupError):
    pass


def _require_transaction() -> None:
    if not connection.in_atomic_block:
        raise RuntimeError("the event store writes only inside the caller's transaction")


def lock_streams(
    tenant_id: str, exception_ids: Iterable[uuid.UUID], fields: Sequence[str] = ()
) -> dict[uuid.UUID, Stream]:
    """Lock the exception rows (sorted by id) and return their stream heads."""
    _require_transaction()
    ids = sorted(set(exception_ids))
    if not ids:
        return {}
    names = [
        "id",
        "last_sequence",
        "consumer_heads",
        *[f for f in fields if f not in ("id", "last_sequence", "consumer_heads")],
    ]
    rows = (
        ExceptionRecord.objects.filter(tenant_id=tenant_id, id__in=ids)
        .order_by("id")
        .select_for_update()
        .values(*names)
    )
    streams = {}
    for row in rows:
        streams[row["id"]] = Stream(
            exception_id=row["id"],
            last_sequence=row["last_sequence"],
            heads=dict(row["consumer_heads"] or {}),
            fields={k: row[k] for k in names[3:]},
        )
    return streams


def stage(
    tenant_id: str, streams: dict[uuid.UUID, Stream], new_events: Sequence[NewEvent], producer: str
) -> list[Envelope]:
    """Assign sequences and ordering metadata to new events (in memory, on locked streams)."""
    staged = []
    for new in new_events:
        stream = streams.get(new.exception_id)
        if stream is None:
            raise StreamNotFound(f"exception {new.exception_id} of tenant {tenant_id} is not locked or does not exist")
        payload = validate_payload(new.event_type, new.payload)
        event_id = new.event_id or uuid.uuid4()
        stream.last_sequence += 1
        stream.appended = True
        prev = {}
        for consumer in subscribers(new.event_type):
            head = stream.heads.get(consumer)
            if head:
                prev[consumer] = head
            stream.heads[consumer] = str(event_id)
        staged.append(
            Envelope(
                event_id=event_id,
                event_type=new.event_type,
                tenant_id=tenant_id,
                exception_id=new.exception_id,
                sequence=stream.last_sequence,
                causation_id=new.causation_id,
                producer=producer,
                payload=payload,
                schema_version=CATALOGUE[new.event_type].schema_version,
                metadata={"prev": prev} if prev else {},
            )
        )
    return staged


def write_events(tenant_id: str, envelopes: Sequence[Envelope]) -> list[OutboxRow]:
    """Insert staged events and their outbox rows; publish the rows after commit."""
    if not envelopes:
        return []
    _require_transaction()
    bulk.insert(
        ExceptionEvent,
        [
            {
                "event_id": e.event_id,
                "tenant_id": tenant_id,
                "exception_id": e.exception_id,
                "event_type": e.event_type,
                "schema_version": e.schema_version,
                "sequence": e.sequence,
                "causation_id": e.causation_id,
                "producer": e.producer,
                "payload": e.payload,
                "metadata": e.metadata,
            }
            for e in envelopes
        ],
    )
    by_queue: dict[str, list[uuid.UUID]] = defaultdict(list)
    for e in envelopes:
        for queue in subscribers(e.event_type):
            by_queue[queue].append(e.event_id)
    return offer(tenant_id, by_queue, envelopes=envelopes)


def offer(
    tenant_id: str,
    event_ids_by_queue: dict[str, Sequence[uuid.UUID]],
    *,
    envelopes: Sequence[Envelope] = (),
) -> list[OutboxRow]:
    """Owe stored events to agent queues: outbox rows (batches of at most BATCH_SIZE), published
    after commit. Also how retries, parked events and replays are re-offered."""
    _require_transaction()
    batch_size = settings.SENTINAI["BATCH_SIZE"]
    wanted = []
    for queue, ids in event_ids_by_queue.items():
        for start in range(0, len(ids), batch_size):
            chunk = [str(i) for i in ids[start : start + batch_size]]
            wanted.append({"tenant_id": tenant_id, "queue": queue, "event_ids": chunk})
    if not wanted:
        return []
    inserted = bulk.insert(Outbox, wanted, returning=["id", "queue", "event_ids"])
    rows = [
        OutboxRow(id=row_id, tenant_id=tenant_id, queue=queue, event_ids=tuple(uuid.UUID(i) for i in _json(ids)))
        for row_id, queue, ids in inserted
    ]
    from sentinai import outbox

    transaction.on_commit(partial(outbox.publish_after_commit, rows, {e.event_id: e for e in envelopes}), robust=True)
    return rows


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


def write_streams(streams: Iterable[Stream]) -> None:
    """Write new heads and projection changes of the streams, one UPDATE per set of changed fields."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for stream in streams:
        if not stream.appended and not stream.changes:
            continue
        row = {"id": stream.exception_id}
        if stream.appended:
            row["last_sequence"] = stream.last_sequence
            row["consumer_heads"] = stream.heads
        row.update(stream.changes)
        groups[tuple(row)].append(row)
    for rows in groups.values():
        bulk.update(ExceptionRecord, "id", rows, touch="updated_at")


def append(*, tenant_id: str, events: Sequence[NewEvent], producer: str) -> list[Envelope]:
    """Append events for one or many exceptions of one tenant, inside the caller's transaction."""
    _require_transaction()
    streams = lock_streams(tenant_id, (e.exception_id for e in events))
    envelopes = stage(tenant_id, streams, events, producer)
    write_events(tenant_id, envelopes)
    write_streams(streams.values())
    return envelopes


def load_envelopes(tenant_id: str, event_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Envelope]:
    """Read stored events (for the relay, retries and replays)."""
    ids = list(event_ids)
    if not ids:
        return {}
    rows = ExceptionEvent.objects.filter(tenant_id=tenant_id, event_id__in=ids).values_list(
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
    return {
        row[0]: Envelope(
            event_id=row[0],
            event_type=row[1],
            tenant_id=tenant_id,
            exception_id=row[2],
            sequence=row[3],
            causation_id=row[4],
            producer=row[5],
            payload=row[6],
            schema_version=row[7],
            metadata=row[8] or {},
            recorded_at=row[9],
        )
        for row in rows
    }
