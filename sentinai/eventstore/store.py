"""The event store. `append` is the only way to emit an event.

An append, inside the caller's transaction:
1. locks the stream heads (exception_stream rows) of the events' exceptions, in id order so that
   concurrent appends cannot deadlock, and takes the next gap-free per-exception `sequence`;
2. records, for each agent subscribed to the event type, the previous event of the same exception
   that agent must apply first (`metadata.prev`) - the consumer framework's ordering gate;
3. inserts the events and one outbox row per subscribed agent queue (a batch of event ids);
4. registers the publication of those outbox rows for after the commit.

Handlers use the same steps through `lock_streams` / `stage` / `write_events` / `write_streams`,
because they already hold the locks for their whole batch. Ids are canonical strings (sentinai.kernel.ids).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson
from django.conf import settings
from django.db import connection, models, transaction

from exceptions_app.models import ExceptionRecord
from sentinai.eventstore.events import CATALOGUE, Envelope, EventPayload, subscribers, validate_payload
from sentinai.kernel import bulk, ids
from sentinai.models import ExceptionEvent, ExceptionStream, Outbox


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append. Handlers pass a deterministic `event_id` (events.derived_event_id)."""

    exception_id: str
    event_type: str
    payload: dict[str, Any] | EventPayload
    causation_id: str | None = None
    event_id: str | None = None


@dataclass(slots=True)
class Stream:
    """The locked head of one exception's event stream, plus the projection fields a handler asked
    for. `changes` are projection updates written in the same transaction as the new head."""

    exception_id: str
    last_sequence: int
    heads: dict[str, str]
    fields: dict[str, Any]
    changes: dict[str, Any] = field(default_factory=dict)
    appended: bool = False

    def copy(self) -> Stream:
        """A copy whose head and changes can be modified independently (fields are read-only)."""
        return Stream(
            self.exception_id, self.last_sequence, dict(self.heads), self.fields, dict(self.changes), self.appended
        )


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    tenant_id: str
    queue: str
    event_ids: tuple[str, ...]


class StreamNotFound(LookupError):
    pass


def _require_transaction() -> None:
    if not connection.in_atomic_block:
        raise RuntimeError("the event store writes only inside the caller's transaction")


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


def open_streams(tenant_id: str, exception_ids: Iterable[str]) -> None:
    """Start empty event streams for newly created exceptions (in their creating transaction)."""
    _require_transaction()
    bulk.insert(ExceptionStream, [{"exception": i, "tenant_id": tenant_id} for i in exception_ids])


def start_streams(*, tenant_id: str, events: Sequence[NewEvent], producer: str) -> list[Envelope]:
    """Start the event streams of newly created exceptions with their first events. The exceptions are
    new in this transaction, so there is nothing to lock: each stream row is written once, with its
    head after these events."""
    _require_transaction()
    streams = {e.exception_id: Stream(e.exception_id, 0, {}, {}) for e in events}
    envelopes = stage(tenant_id, streams, events, producer)
    write_events(tenant_id, envelopes)
    bulk.insert(
        ExceptionStream,
        [
            {
                "exception": s.exception_id,
                "tenant_id": tenant_id,
                "last_sequence": s.last_sequence,
                "consumer_heads": s.heads,
            }
            for s in streams.values()
        ],
    )
    return envelopes


def lock_streams(tenant_id: str, exception_ids: Iterable[str], fields: Sequence[str] = ()) -> dict[str, Stream]:
    """Lock the stream heads of these exceptions (in id order, so concurrent lockers cannot deadlock)
    and return them with the requested fields of the exception projection."""
    _require_transaction()
    wanted = list(set(exception_ids))
    if not wanted:
        return {}
    if bulk.is_postgres():
        return _lock_streams_postgres(tenant_id, wanted, list(fields))
    rows = (
        ExceptionStream.objects.filter(tenant_id=tenant_id, exception_id__in=wanted)
        .order_by("exception_id")
        .select_for_update()
        .values("exception_id", "last_sequence", "consumer_heads", *[f"exception__{f}" for f in fields])
    )
    return {
        str(row["exception_id"]): Stream(
            exception_id=str(row["exception_id"]),
            last_sequence=row["last_sequence"],
            heads=dict(row["consumer_heads"] or {}),
            fields={f: row[f"exception__{f}"] for f in fields},
        )
        for row in rows
    }


def _lock_streams_postgres(tenant_id: str, wanted: list[str], extra: list[str]) -> dict[str, Stream]:
    """Lock, then read. The projection is read by a second statement on purpose: when the lock had to
    wait for another transaction, PostgreSQL re-checks only the locked row, so projection columns
    joined into the locking statement could be those of before that transaction committed."""
    streams = {}
    with bulk.server_cursor() as cursor:
        cursor.execute(
            "SELECT exception_id, last_sequence, consumer_heads FROM exception_stream "
            f"WHERE tenant_id = %s AND exception_id {bulk.ANY_UUIDS} ORDER BY exception_id FOR UPDATE",
            [tenant_id, bulk.uuid_list(wanted)],
        )
        for exception_id, last_sequence, heads in cursor:
            streams[exception_id] = Stream(exception_id, last_sequence, dict(_json(heads) or {}), {})
        if extra and streams:
            meta = ExceptionRecord._meta
            fields = [meta.get_field(name) for name in extra]
            json_fields = {i for i, f in enumerate(fields) if isinstance(f, models.JSONField)}
            columns = ", ".join(f'"{f.column}"' for f in fields)
            cursor.execute(
                f'SELECT id, {columns} FROM "{meta.db_table}" WHERE id {bulk.ANY_UUIDS}', [bulk.uuid_list(streams)]
            )
            for exception_id, *values in cursor:
                streams[exception_id].fields = {
                    name: (_json(value) if i in json_fields else value)
                    for i, (name, value) in enumerate(zip(extra, values, strict=True))
                }
    return streams


def stage(tenant_id: str, streams: dict[str, Stream], new_events: Sequence[NewEvent], producer: str) -> list[Envelope]:
    """Assign sequences and ordering metadata to new events (in memory, on locked streams)."""
    staged = []
    for new in new_events:
        stream = streams.get(new.exception_id)
        if stream is None:
            raise StreamNotFound(f"exception {new.exception_id} of tenant {tenant_id} is not locked or does not exist")
        payload = validate_payload(new.event_type, new.payload)
        event_id = new.event_id or ids.new_id()
        stream.last_sequence += 1
        stream.appended = True
        prev = {}
        for consumer in subscribers(new.event_type):
            head = stream.heads.get(consumer)
            if head:
                prev[consumer] = head
            stream.heads[consumer] = event_id
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
    by_queue: dict[str, list[str]] = defaultdict(list)
    for e in envelopes:
        for queue in subscribers(e.event_type):
            by_queue[queue].append(e.event_id)
    return offer(tenant_id, by_queue, envelopes=envelopes)


def offer(
    tenant_id: str,
    event_ids_by_queue: dict[str, Sequence[str]],
    *,
    envelopes: Sequence[Envelope] = (),
) -> list[OutboxRow]:
    """Owe stored events to agent queues: outbox rows (batches of at most BATCH_SIZE), published
    after commit. Also how retries, parked events and replays are re-offered."""
    _require_transaction()
    batch_size = settings.SENTINAI["BATCH_SIZE"]
    wanted = []
    for queue, event_ids in event_ids_by_queue.items():
        for start in range(0, len(event_ids), batch_size):
            wanted.append(
                {"tenant_id": tenant_id, "queue": queue, "event_ids": list(event_ids[start : start + batch_size])}
            )
    if not wanted:
        return []
    inserted = bulk.insert(Outbox, wanted, returning=["id", "queue", "event_ids"])
    rows = [
        OutboxRow(id=row_id, tenant_id=tenant_id, queue=queue, event_ids=tuple(_json(event_ids)))
        for row_id, queue, event_ids in inserted
    ]
    from sentinai.eventstore import outbox

    transaction.on_commit(partial(outbox.publish_after_commit, rows, {e.event_id: e for e in envelopes}), robust=True)
    return rows


def write_streams(streams: Iterable[Stream]) -> None:
    """Write the new stream heads, then the projection changes (one UPDATE per set of changed fields)."""
    heads = []
    changes: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for stream in streams:
        if stream.appended:
            heads.append(
                {
                    "exception": stream.exception_id,
                    "last_sequence": stream.last_sequence,
                    "consumer_heads": stream.heads,
                }
            )
        if stream.changes:
            row = {"id": stream.exception_id, **stream.changes}
            changes[tuple(row)].append(row)
    bulk.update(ExceptionStream, "exception", heads)
    for rows in changes.values():
        bulk.update(ExceptionRecord, "id", rows, touch="updated_at")


def append(*, tenant_id: str, events: Sequence[NewEvent], producer: str) -> list[Envelope]:
    """Append events for one or many exceptions of one tenant, inside the caller's transaction."""
    _require_transaction()
    streams = lock_streams(tenant_id, (e.exception_id for e in events))
    envelopes = stage(tenant_id, streams, events, producer)
    write_events(tenant_id, envelopes)
    write_streams(streams.values())
    return envelopes


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
