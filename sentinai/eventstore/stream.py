"""The Kafka event stream: every recorded event, published from an outbox to a topic per tenant.

- **No dual write.** The event store's append calls `owe` in the transaction that records the events:
  `stream_outbox` rows (one per append and shard) commit with the events or not at all.
- **Topic per tenant** (`SENTINAI_KAFKA_TOPIC_TEMPLATE`, default `sentinai.events.{tenant}`), message
  key = exception id, so an exception's events share a partition; the value is the envelope as JSON;
  headers `event_id`, `event_type`, `tenant_id`, `schema_version`.
- **Order per exception with any number of relays.** Exception ids are split into SHARDS fixed
  shards. A relay works a shard only while holding its PostgreSQL advisory lock (taken with
  try-lock, so relays spread over the shards by themselves), reads its rows in id order - per
  exception the order of the appends, which serialise on the exception's stream lock - and produces
  them in that order with the idempotent producer (no reordering or duplicates from its retries).
- **At least once.** A row is deleted, in the transaction that holds the shard lock, only after Kafka
  acknowledged every event of it (the delivery reports); after a crash or an outage its events are
  sent again, with the same event id for consumers to de-duplicate on. A broker outage only delays.
- **Topics** are created on first use with the configured partitions and replication, unless
  `SENTINAI_KAFKA_CREATE_TOPICS` is off: then a missing topic is refused with a clear error and its
  rows wait.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import orjson
from django.conf import settings
from django.db import connection, transaction

from sentinai.eventstore.events import Envelope
from sentinai.eventstore.reader import load_envelopes
from sentinai.kernel import bulk, kafka, metrics
from sentinai.models import ExceptionEvent, StreamOutbox
from sentinai.tenancy.scope import all_tenants_scope, tenant_scope

logger = logging.getLogger(__name__)

# Fixed: changing it while rows wait could let two relays work one exception's rows at once.
SHARDS = 16
# Advisory-lock keys of the shards (two int4 keys: this namespace, the shard).
LOCK_NAMESPACE = 0x5E4E
FLUSH_TIMEOUT = 30.0


class StreamError(RuntimeError):
    """The stream could not publish a shard's rows this round; they stay and are sent again."""


def shard_of(exception_id: str) -> int:
    return int(exception_id[:8], 16) % SHARDS


def owe(tenant_id: str, envelopes: Sequence[Envelope]) -> None:
    """Owe these just-recorded events to the stream (inside the appending transaction)."""
    if not envelopes or not kafka.stream_enabled():
        return
    by_shard: dict[int, list[str]] = defaultdict(list)
    for e in envelopes:
        by_shard[shard_of(e.exception_id)].append(e.event_id)
    bulk.insert(
        StreamOutbox,
        [{"tenant_id": tenant_id, "shard": shard, "event_ids": event_ids} for shard, event_ids in by_shard.items()],
    )


# --- publishing --------------------------------------------------------------------------------


def headers(envelope: Envelope) -> list[tuple[str, bytes]]:
    return [
        ("event_id", envelope.event_id.encode()),
        ("event_type", envelope.event_type.encode()),
        ("tenant_id", envelope.tenant_id.encode()),
        ("schema_version", str(envelope.schema_version).encode()),
    ]


def value(envelope: Envelope) -> bytes:
    return orjson.dumps({"tenant_id": envelope.tenant_id, **envelope.to_message()})


def new_producer():
    from confluent_kafka import Producer

    return Producer(
        kafka.client_config(
            **{
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "compression.type": "lz4",
                "message.timeout.ms": 20_000,
            }
        )
    )


class Topics:
    """Which tenant topics exist, creating them on first use (cached per process)."""

    def __init__(self):
        from confluent_kafka.admin import AdminClient

        self.admin = AdminClient(kafka.client_config())
        self.known: set[str] = set()

    def ensure(self, topic: str) -> None:
        if topic in self.known:
            return
        from confluent_kafka import KafkaException

        try:
            metadata = self.admin.list_topics(topic=topic, timeout=10)
        except KafkaException as exc:  # the cluster is unreachable: the rows wait for the next round
            raise StreamError(f"no metadata for topic {topic}: {exc.args[0].str()}") from exc
        found = metadata.topics.get(topic)
        if found is not None and found.error is None:
            self.known.add(topic)
            return
        cfg = settings.SENTINAI
        if not cfg["KAFKA_CREATE_TOPICS"]:
            raise StreamError(
                f"topic {topic} does not exist and SENTINAI_KAFKA_CREATE_TOPICS is off: create it on the cluster"
            )
        from confluent_kafka import KafkaError
        from confluent_kafka.admin import NewTopic

        new = NewTopic(
            topic, num_partitions=cfg["KAFKA_TOPIC_PARTITIONS"], replication_factor=cfg["KAFKA_TOPIC_REPLICATION"]
        )
        try:
            self.admin.create_topics([new], operation_timeout=30)[topic].result(timeout=30)
            logger.info("created Kafka topic %s", topic)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise StreamError(f"cannot create topic {topic}: {exc.args[0].str()}") from exc
        self.known.add(topic)


def publish(producer, envelopes: Iterable[Envelope], topics: Topics) -> int:
    """Produce these events in order and wait until Kafka acknowledged each; raise StreamError if any
    was not."""
    failures: list[str] = []

    def delivered(err, _msg):
        if err is not None:
            failures.append(err.str())

    count = 0
    for envelope in envelopes:
        topic = kafka.topic_for(envelope.tenant_id)
        topics.ensure(topic)
        while True:
            try:
                producer.produce(
                    topic,
                    key=envelope.exception_id.encode(),
                    value=value(envelope),
                    headers=headers(envelope),
                    on_delivery=delivered,
                )
                break
            except BufferError:  # the local queue is full: let deliveries drain
                producer.poll(0.1)
        count += 1
    remaining = producer.flush(FLUSH_TIMEOUT)
    if remaining or failures:
        metrics.STREAM_FAILURES.inc(len(failures) + remaining)
        raise StreamError(f"{remaining} undelivered, {len(failures)} failed ({failures[:1]})")
    return count


def _try_lock(shard: int) -> bool:
    if connection.vendor != "postgresql":
        return True  # the embedded default runs one relay
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [LOCK_NAMESPACE, shard])
        return bool(cursor.fetchone()[0])


def relay_shard(shard: int, producer, topics: Topics, limit: int) -> int:
    """Publish up to about `limit` owed events of one shard, in order; returns events sent (0 when
    another relay holds the shard or nothing is owed)."""
    with all_tenants_scope(), transaction.atomic():
        if not _try_lock(shard):
            return 0
        rows, total = [], 0
        for row in StreamOutbox.objects.filter(shard=shard).order_by("id").values_list("id", "tenant_id", "event_ids"):
            rows.append(row)
            total += len(row[2])
            if total >= limit:
                break
        if not rows:
            return 0
        found: dict[str, Envelope] = {}
        wanted: dict[str, list[str]] = defaultdict(list)
        for _, tenant_id, event_ids in rows:
            wanted[tenant_id].extend(event_ids)
        for tenant_id, event_ids in wanted.items():
            found.update(load_envelopes(tenant_id, event_ids))
        ordered = [found[i] for _, _, event_ids in rows for i in event_ids if i in found]
        missing = total - len(ordered)
        if missing:  # cannot happen while the event store is append-only; say so loudly if it does
            logger.error("%d events owed to the stream are not stored; skipping them", missing)
        sent = publish(producer, ordered, topics)
        StreamOutbox.objects.filter(id__in=[r[0] for r in rows]).delete()
    metrics.STREAM_PUBLISHED.inc(sent)
    return sent


class RoundResult(int):
    """Events sent by a round (an int), and whether some shard had to wait."""

    waited: bool = False


def relay_round(producer, topics: Topics, limit: int | None = None) -> RoundResult:
    """One pass over every shard. Returns events sent. A fatal producer error (the idempotent
    producer's state is lost) is raised: the caller needs a new producer."""
    from confluent_kafka import KafkaException

    limit = limit or settings.SENTINAI["KAFKA_RELAY_BATCH"]
    sent, waited = 0, False
    for shard in range(SHARDS):
        try:
            sent += relay_shard(shard, producer, topics, limit)
        except (StreamError, KafkaException) as exc:
            if isinstance(exc, KafkaException) and exc.args[0].fatal():
                raise
            # Nothing was deleted: the shard's rows are sent again next round; librdkafka reconnects
            # by itself.
            from sentinai.kernel import dependencies

            if not dependencies.is_down("kafka"):  # during an outage, one line (run_relay) is enough
                logger.warning("stream shard %d waits: %s", shard, exc)
            waited = True
    result = RoundResult(sent)
    result.waited = waited
    return result


def run_relay(*, idle_seconds: float = 0.2, should_stop: Callable[[], bool] = lambda: False) -> None:
    """The relay process: rounds until told to stop. Reconnects to the database by itself; Kafka's
    client reconnects on its own, and while Kafka is down rounds back off (rows only wait)."""
    from confluent_kafka import KafkaException
    from django.db import close_old_connections, connections

    from sentinai.kernel import dependencies

    producer, topics = new_producer(), Topics()
    backoff, down = 0.5, False
    while not should_stop():
        try:
            sent = relay_round(producer, topics)
        except dependencies.database_errors() as exc:
            dependencies.down("database", exc, consequence="the stream relay retries with backoff")
            down = True
            for conn in connections.all(initialized_only=True):
                conn.close()
            close_old_connections()
            time.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
            continue
        except KafkaException as exc:
            logger.error("stream relay: fatal producer error (%s); starting a new producer", exc.args[0].str())
            producer = new_producer()
            continue
        if down:
            dependencies.up("database")
            down = False
        if sent.waited and not sent:
            dependencies.down("kafka", "the cluster did not answer", consequence="events wait in the stream outbox")
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
        else:
            if sent:
                dependencies.up("kafka")
            backoff = 0.5
            if not sent:
                time.sleep(idle_seconds)


# --- replay ------------------------------------------------------------------------------------


def replay(tenant_id: str, *, since: datetime | None = None, page: int = 5000, producer=None) -> int:
    """Publish a tenant's recorded history again (a new consumer's backfill), each exception's events
    in sequence order. Not through the outbox: the events are already stored. Returns events sent."""
    producer = producer or new_producer()
    topics = Topics()
    sent, after = 0, ("", 0)
    while True:
        with tenant_scope(tenant_id):
            rows = ExceptionEvent.objects.filter(tenant_id=tenant_id)
            if since is not None:
                rows = rows.filter(recorded_at__gte=since)
            if after[0]:
                from django.db.models import Q

                rows = rows.filter(Q(exception_id__gt=after[0]) | Q(exception_id=after[0], sequence__gt=after[1]))
            keys = list(
                rows.order_by("exception_id", "sequence").values_list("event_id", "exception_id", "sequence")[:page]
            )
            if not keys:
                return sent
            found = load_envelopes(tenant_id, [str(k[0]) for k in keys])
        sent += publish(producer, [found[str(k[0])] for k in keys], topics)
        after = (str(keys[-1][1]), keys[-1][2])
