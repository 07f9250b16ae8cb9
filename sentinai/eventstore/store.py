"""The event store. `append` is the one way to record events, for every producer.

An append, inside the caller's transaction:
1. locks the stream heads (exception_stream rows) of the events' exceptions, in id order so that
   concurrent appends cannot deadlock, and takes the next gap-free per-exception `sequence` - or, for
   handlers that already hold the locks of their whole batch (`lock_streams`), advances those;
2. refuses an event whose producer its catalogue entry does not allow;
3. records, for each agent subscribed to the event type, the previous event of the same exception
   that agent must apply first (`metadata.prev`) - the consumer framework's ordering gate;
4. inserts the events, owes them to the subscribed agent queues through the outbox (published after
   commit) and, when a Kafka cluster is configured, to the tenant's event stream (eventstore/stream.py);
5. writes the new stream heads and the projection changes the caller made on its locked streams.

The projection a stream belongs to (the exception row) is owned by an app, which registers it with
`register_projection` in its AppConfig.ready(). Ids are canonical strings (sentinai.kernel.ids).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.db import connection, models

from sentinai.eventstore import outbox
from sentinai.eventstore import stream as event_stream
from sentinai.eventstore.events import CATALOGUE, Envelope, EventPayload, subscribers, validate_payload
from sentinai.kernel import bulk, ids, kafka, tracing
from sentinai.models import ExceptionEvent, ExceptionStream


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


class StreamNotFound(LookupError):
    pass


class ProducerNotAllowed(ValueError):
    """The catalogue does not let this producer emit this event type."""


_projection: type[models.Model] | None = None


def register_projection(model: type[models.Model]) -> None:
    """The model whose row (primary key = exception id) holds each stream's projection: the fields
    handlers lock and read with `lock_streams`, and the `changes` they make. Registered once, by the
    app that owns it."""
    global _projection
    _projection = model


def projection() -> type[models.Model]:
    if _projection is None:
        raise RuntimeError("no projection registered with the event store (is exceptions_app installed?)")
    return _projection


def _require_transaction() -> None:
    if not connection.in_atomic_block:
        raise RuntimeError("the event store writes only inside the caller's transaction")


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


def open_streams(tenant_id: str, exception_ids: Iterable[str]) -> None:
    """Start empty event streams for exceptions created in this transaction, to be appended to later."""
    _require_transaction()
    bulk.insert(ExceptionStream, [{"exception_id": i, "tenant_id": tenant_id} for i in exception_ids])


def lock_streams(tenant_id: str, exception_ids: Iterable[str], fields: Sequence[str] = ()) -> dict[str, Stream]:
    """Lock the stream heads of these exceptions (in id order, so concurrent lockers cannot deadlock)
    and return them with the requested fields of the exception projection."""
    with bulk.pipeline():
        locked = lock_streams_later(tenant_id, exception_ids, fields)
    return locked()


def lock_streams_later(
    tenant_id: str, exception_ids: Iterable[str], fields: Sequence[str] = ()
) -> Callable[[], dict[str, Stream]]:
    """`lock_streams`, whose answer is read when the returned function is called: in a pipeline
    (bulk.pipeline) the caller sends its own statements with these, and the lot costs one round trip."""
    _require_transaction()
    wanted = list(set(exception_ids))
    if not wanted:
        return dict
    if bulk.is_postgres():
        return _lock_streams_postgres(tenant_id, wanted, list(fields))
    rows = (
        ExceptionStream.objects.filter(tenant_id=tenant_id, exception_id__in=wanted)
        .order_by("exception_id")
        .select_for_update()
        .values_list("exception_id", "last_sequence", "consumer_heads")
    )
    streams = {
        str(xid): Stream(exception_id=str(xid), last_sequence=seq, heads=dict(heads or {}), fields={})
        for xid, seq, heads in rows
    }
    if fields and streams:
        for row in projection().objects.filter(id__in=list(streams)).values("id", *fields):
            streams[str(row.pop("id"))].fields = row
    return lambda: streams


def _lock_streams_postgres(tenant_id: str, wanted: list[str], extra: list[str]) -> Callable[[], dict[str, Stream]]:
    """Lock, then read. The projection is read by a second statement on purpose: when the lock had to
    wait for another transaction, PostgreSQL re-checks only the locked row, so projection columns
    joined into the locking statement could be those of before that transaction committed. Sent
    together (in the caller's pipeline), the server still runs the read after the lock is held, with
    a snapshot of its own."""
    locked = bulk.select_later(
        "SELECT exception_id, last_sequence, consumer_heads FROM exception_stream "
        f"WHERE tenant_id = %s AND exception_id {bulk.ANY_UUIDS} ORDER BY exception_id FOR UPDATE",
        [tenant_id, bulk.uuid_list(wanted)],
    )
    read = list
    json_fields: set[int] = set()
    if extra:
        meta = projection()._meta
        fields = [meta.get_field(name) for name in extra]
        json_fields = {i for i, f in enumerate(fields) if isinstance(f, models.JSONField)}
        columns = ", ".join(f'"{f.column}"' for f in fields)
        read = bulk.select_later(
            f'SELECT id, {columns} FROM "{meta.db_table}" WHERE id {bulk.ANY_UUIDS}', [bulk.uuid_list(wanted)]
        )

    def streams() -> dict[str, Stream]:
        found = {
            exception_id: Stream(exception_id, last_sequence, dict(_json(heads) or {}), {})
            for exception_id, last_sequence, heads in locked()
        }
        for exception_id, *values in read():
            if exception_id in found:
                found[exception_id].fields = {
                    name: (_json(value) if i in json_fields else value)
                    for i, (name, value) in enumerate(zip(extra, values, strict=True))
                }
        return found

    return streams


def _stage(tenant_id: str, streams: dict[str, Stream], new_events: Sequence[NewEvent], producer: str) -> list[Envelope]:
    """Assign sequences and ordering metadata to new events (in memory, on locked streams)."""
    staged = []
    trace_of = tracing.traceparent_for if tracing.enabled() else None
    for new in new_events:
        stream = streams.get(new.exception_id)
        if stream is None:
            raise StreamNotFound(f"exception {new.exception_id} of tenant {tenant_id} is not locked or does not exist")
        payload = validate_payload(new.event_type, new.payload)
        if producer not in CATALOGUE[new.event_type].producers:
            raise ProducerNotAllowed(
                f"{producer!r} may not emit {new.event_type} (catalogue: {CATALOGUE[new.event_type].producers})"
            )
        event_id = new.event_id or ids.new_id()
        stream.last_sequence += 1
        stream.appended = True
        prev = {}
        for consumer in subscribers(new.event_type):
            head = stream.heads.get(consumer)
            if head:
                prev[consumer] = head
            stream.heads[consumer] = event_id
        metadata: dict[str, Any] = {"prev": prev} if prev else {}
        if trace_of is not None and (traceparent := trace_of(new.exception_id)):
            metadata[tracing.TRACEPARENT] = traceparent
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
                metadata=metadata,
            )
        )
    return staged


def _write_events(tenant_id: str, envelopes: Sequence[Envelope]) -> None:
    """Insert staged events and owe them to their subscribers' queues (the outbox)."""
    if not envelopes:
        return
    rows = [
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
    ]
    by_queue: dict[str, list[str]] = defaultdict(list)
    for e in envelopes:
        for queue in subscribers(e.event_type):
            by_queue[queue].append(e.event_id)
    # Appends run in a pipeline, where no statement here waits for an answer: the outbox rows' ids
    # are read by the publisher after commit, and the stream's rows are written by the events' own
    # INSERT, the database putting the events' recorded_at into their messages.
    outbox.offer_deferred(tenant_id, by_queue, envelopes=envelopes)
    if not kafka.stream_enabled():
        bulk.insert(ExceptionEvent, rows)
    elif bulk.is_postgres():
        sql, payload = bulk.insert_sql(ExceptionEvent, rows)
        event_stream.owe_with_insert(tenant_id, envelopes, sql, [payload])
    else:  # the stream's messages carry the stored recorded_at: the insert returns it, once
        recorded_at = bulk.insert_stamped(ExceptionEvent, rows, stamp="recorded_at")
        event_stream.owe(tenant_id, envelopes, recorded_at)


def _write_streams(streams: Iterable[Stream]) -> None:
    """Write the new stream heads, then the projection changes (one UPDATE per set of changed fields;
    none for changes to the value the handler loaded)."""
    heads = []
    changes: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for stream in streams:
        if stream.appended:
            heads.append(
                {
                    "exception_id": stream.exception_id,
                    "last_sequence": stream.last_sequence,
                    "consumer_heads": stream.heads,
                }
            )
        # A change to the value the row already holds (the playbook agent setting in_progress at every
        # step) is not written: each UPDATE of the wide, many-indexed projection row costs a new row
        # version and, when an indexed column is set, an entry in every index.
        changed = {k: v for k, v in stream.changes.items() if k not in stream.fields or stream.fields[k] != v}
        if changed:
            row = {"id": stream.exception_id, **changed}
            changes[tuple(row)].append(row)
    bulk.update(ExceptionStream, "exception_id", heads)
    for rows in changes.values():
        bulk.update(projection(), "id", rows, touch="updated_at")


def append(
    *,
    tenant_id: str,
    events: Sequence[NewEvent],
    producer: str,
    streams: dict[str, Stream] | None = None,
    new_streams: bool = False,
) -> list[Envelope]:
    """Record events of one tenant (for one or many exceptions) inside the caller's transaction.

    streams: the locked streams of a handler's batch (`lock_streams`); they are advanced in place and
    written with the projection changes made on them, even when `events` is empty. Without them the
    streams of the events' exceptions are locked here. new_streams: the exceptions were created in
    this transaction, so their streams start here (nothing to lock)."""
    _require_transaction()
    if new_streams:
        streams = {e.exception_id: Stream(e.exception_id, 0, {}, {}) for e in events}
    elif streams is None:
        streams = lock_streams(tenant_id, (e.exception_id for e in events))
    envelopes = _stage(tenant_id, streams, events, producer)
    if envelopes:
        # Every statement of an append is this module's bulk SQL: in one pipeline they cost two
        # round trips (the events' insert answers with their recorded_at; the end waits for the rest).
        with bulk.pipeline():
            _write(tenant_id, streams, envelopes, new_streams)
    else:  # (a pipeline's end costs a round trip even when it has little to wait for)
        _write(tenant_id, streams, envelopes, new_streams)
    return envelopes


def _write(tenant_id: str, streams: dict[str, Stream], envelopes: list[Envelope], new_streams: bool) -> None:
    _write_events(tenant_id, envelopes)
    if new_streams:
        bulk.insert(
            ExceptionStream,
            [
                {
                    "exception_id": s.exception_id,
                    "tenant_id": tenant_id,
                    "last_sequence": s.last_sequence,
                    "consumer_heads": s.heads,
                }
                for s in streams.values()
            ],
        )
    else:
        _write_streams(streams.values())
