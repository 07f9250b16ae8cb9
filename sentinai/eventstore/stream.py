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
  tenant's rows wait (other tenants' rows of the shard go on: order is per exception, and an
  exception has one tenant).

What keeps it cheap (docs/performance.md, "Kafka event stream"): each outbox row carries its events
ready to produce - key, headers and the JSON value, written by the append from the envelopes it just
stored - so the relay reads one column per row, looks nothing up in the event store and builds no
JSON (it only splits each row's array); and a round takes several
shards' locks in one transaction, produces their events and waits for Kafka once (one flush per
`KAFKA_RELAY_BATCH` events rather than per shard) before deleting their rows and committing.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from django.conf import settings
from django.db import connection

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
# Rounds in a row that delivered nothing while rows waited, after which the relay makes new clients.
FRESH_CLIENTS_AFTER_ROUNDS = 3


class StreamError(RuntimeError):
    """The stream could not publish a shard's rows this round; they stay and are sent again."""


class ClusterUnreachable(StreamError):
    """No metadata from the cluster at all: every other shard of the round would wait the same."""


def shard_of(exception_id: str) -> int:
    return int(exception_id[:8], 16) % SHARDS


def owe(tenant_id: str, envelopes: Sequence[Envelope], recorded_at: datetime) -> None:
    """Owe these just-recorded events to the stream (the event store's append calls it, inside its
    transaction, when the stream is on): each shard's row carries its events ready to produce
    (`messages`), built here from the envelopes and the time the event store recorded them
    (`recorded_at`, one for the append's insert), so that the relay reads them from one column."""
    bulk.insert(StreamOutbox, _rows(tenant_id, envelopes, recorded_at.isoformat()))


# Stands for recorded_at in messages built before the database stamps the events (`owe_with_insert`);
# random per process, so no payload can carry it.
_RECORDED_AT = f"recorded-at-{secrets.token_hex(16)}"
# The statement's time as `datetime.isoformat()` writes a UTC time (the form `value` gives).
_RECORDED_AT_SQL = "to_char(statement_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"


def owe_with_insert(tenant_id: str, envelopes: Sequence[Envelope], insert_sql: str, insert_params: list) -> None:
    """PostgreSQL: `owe`, in one statement with the events' own INSERT (`insert_sql`, whose rows get
    the statement's time as their recorded_at): the database writes that time into the messages, so
    the append does not wait for the insert to answer with it before owing them."""
    rows = _rows(tenant_id, envelopes, _RECORDED_AT)
    sql, payload = bulk.insert_sql(StreamOutbox, rows)
    head, _, recordset = sql.partition(" SELECT ")
    columns, _, source = recordset.partition(" FROM ")
    selected = columns.replace('"messages"', f'replace("messages", %s, {_RECORDED_AT_SQL})')
    with bulk.server_cursor() as cursor:
        cursor.execute(
            f"WITH inserted AS ({insert_sql}) {head} SELECT {selected} FROM {source}",
            [*insert_params, _RECORDED_AT, payload],
        )


def _rows(tenant_id: str, envelopes: Sequence[Envelope], recorded_at: str) -> list[dict]:
    by_shard: dict[int, tuple[list[str], list[list]]] = defaultdict(lambda: ([], []))
    for e in envelopes:
        event_ids, messages = by_shard[shard_of(e.exception_id)]
        event_ids.append(e.event_id)
        messages.append(
            [e.event_id, e.exception_id, e.event_type, str(e.schema_version), value(e, recorded_at).decode()]
        )
    return [
        {
            "tenant_id": tenant_id,
            "shard": shard,
            "event_ids": event_ids,
            "messages": orjson.dumps(messages).decode(),
        }
        for shard, (event_ids, messages) in by_shard.items()
    ]


# --- publishing --------------------------------------------------------------------------------


def headers(envelope: Envelope) -> list[tuple[str, bytes]]:
    return [
        ("event_id", envelope.event_id.encode()),
        ("event_type", envelope.event_type.encode()),
        ("tenant_id", envelope.tenant_id.encode()),
        ("schema_version", str(envelope.schema_version).encode()),
    ]


def value(envelope: Envelope, recorded_at: datetime | str | None = None) -> bytes:
    """The Kafka message's value: the envelope as JSON, with its tenant (and `recorded_at`, when the
    envelope was staged before the store set it)."""
    message = {"tenant_id": envelope.tenant_id, **envelope.to_message()}
    if recorded_at is not None:
        message["recorded_at"] = recorded_at if isinstance(recorded_at, str) else recorded_at.isoformat()
    return orjson.dumps(message)


def new_producer():
    from confluent_kafka import Producer

    return Producer(
        kafka.client_config(
            **{
                "enable.idempotence": True,
                "acks": "all",
                # A round flushes once it produced its events (flush ignores linger.ms); until then
                # a long linger lets librdkafka fill large batches: fewer, bigger produce requests
                # cost the broker far less per event (docs/performance.md).
                "linger.ms": 50,
                "compression.type": "lz4",
                "message.timeout.ms": 20_000,
            }
        )
    )


class Topics:
    """Which tenant topics exist, creating them on first use (cached per process)."""

    def __init__(self):
        self.admin = self._new_admin()
        self.known: set[str] = set()

    @staticmethod
    def _new_admin():
        from confluent_kafka.admin import AdminClient

        return AdminClient(kafka.client_config())

    CREATE_TIMEOUT = 30.0

    def ensure(self, topic: str) -> None:
        if topic in self.known:
            return
        from confluent_kafka import KafkaException

        try:
            metadata = self.admin.list_topics(topic=topic, timeout=10)
        except KafkaException as exc:  # the cluster is unreachable: the rows wait for the next round
            # A new admin client next time: one that lived through a broker restart was seen to keep
            # failing its metadata requests for minutes after the broker was back (CI).
            self.admin = self._new_admin()
            raise ClusterUnreachable(f"no metadata for topic {topic}: {exc.args[0].str()}") from exc
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
            self.admin.create_topics([new], operation_timeout=self.CREATE_TIMEOUT)[topic].result(
                timeout=self.CREATE_TIMEOUT
            )
            logger.info("created Kafka topic %s", topic)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise StreamError(f"cannot create topic {topic}: {exc.args[0].str()}") from exc
        except TimeoutError as exc:
            # A cluster that is (re)starting may not answer in time ("coordinator load in progress"):
            # the rows wait for the next round, the relay does not die of it.
            raise StreamError(f"cannot create topic {topic}: no answer within {self.CREATE_TIMEOUT:g} s") from exc
        self.known.add(topic)


@dataclass(frozen=True, slots=True)
class Owed:
    """One event owed to the stream, ready to produce."""

    tenant_id: str
    key: str
    value: str | bytes
    headers: list[tuple[str, str | bytes]]


class Delivery:
    """Events produced in order and not yet acknowledged: `wait` flushes once and raises StreamError
    unless Kafka acknowledged every one."""

    def __init__(self, producer, topics: Topics):
        self.producer, self.topics = producer, topics
        self.failures: list[str] = []
        self.count = 0

    def _delivered(self, err, _msg) -> None:
        if err is not None:
            self.failures.append(err.str())

    def produce(self, events: Iterable[Owed]) -> None:
        producer, topic_of = self.producer, {}
        for event in events:
            topic = topic_of.get(event.tenant_id)
            if topic is None:
                topic = topic_of[event.tenant_id] = kafka.topic_for(event.tenant_id)
                self.topics.ensure(topic)
            while True:
                try:
                    producer.produce(
                        topic, key=event.key, value=event.value, headers=event.headers, on_delivery=self._delivered
                    )
                    break
                except BufferError:  # the local queue is full: let deliveries drain
                    producer.poll(0.1)
            self.count += 1

    def wait(self) -> int:
        if not self.count:
            return 0
        remaining = self.producer.flush(FLUSH_TIMEOUT)
        if remaining or self.failures:
            metrics.STREAM_FAILURES.inc(len(self.failures) + remaining)
            raise StreamError(f"{remaining} undelivered, {len(self.failures)} failed ({self.failures[:1]})")
        return self.count


def _owed_of(envelope: Envelope) -> Owed:
    return Owed(envelope.tenant_id, envelope.exception_id, value(envelope), headers(envelope))


def publish(producer, envelopes: Iterable[Envelope], topics: Topics) -> int:
    """Produce these events in order and wait until Kafka acknowledged each; raise StreamError if any
    was not."""
    delivery = Delivery(producer, topics)
    delivery.produce(_owed_of(e) for e in envelopes)
    return delivery.wait()


def _try_lock(shard: int) -> bool:
    if connection.vendor != "postgresql":
        return True  # the embedded default runs one relay
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [LOCK_NAMESPACE, shard])
        return bool(cursor.fetchone()[0])


# A shard's oldest rows, up to about `limit` events (the rows whose events start before the limit; a row
# is never split). The inner LIMIT bounds the scan: every row owes at least one event. `event_ids` only
# for a row without `messages` (owed before migration 0010), which is read back from the event store.
_OWED_SQL = """
SELECT id, tenant_id, messages, CASE WHEN messages IS NULL THEN event_ids END
FROM (
    SELECT id, tenant_id, event_ids, messages,
           sum(jsonb_array_length(event_ids)) OVER (ORDER BY id) - jsonb_array_length(event_ids) AS before
    FROM (
        SELECT id, tenant_id, event_ids, messages FROM stream_outbox WHERE shard = %(shard)s ORDER BY id LIMIT %(limit)s
    ) AS s
) AS o
WHERE before < %(limit)s
ORDER BY id
"""


def _owed_rows(shard: int, limit: int) -> tuple[dict[int, str], list[Owed], int]:
    """The shard's oldest owed rows (about `limit` events): ({row id: tenant}, the events in order,
    how many owed events are not stored)."""
    if connection.vendor == "postgresql":
        owed = bulk.select(_OWED_SQL, {"shard": shard, "limit": limit})  # fixed text: prepared per connection
    else:  # the embedded default's SQLite: no window function over JSON arrays, the cut made here
        owed, total = [], 0
        rows = StreamOutbox.objects.filter(shard=shard).order_by("id")
        for row_id, tenant_id, messages, event_ids in rows.values_list("id", "tenant_id", "messages", "event_ids"):
            owed.append((row_id, tenant_id, messages, None if messages else event_ids))
            total += len(event_ids)
            if total >= limit:
                break
    # Rows owed before the messages column existed (event_ids given, as JSON text from PostgreSQL): their
    # events read back, per tenant.
    owed = [
        (row_id, tenant_id, messages, orjson.loads(ids) if isinstance(ids, (str, bytes)) else ids)
        for row_id, tenant_id, messages, ids in owed
    ]
    wanted: dict[str, list[str]] = defaultdict(list)
    for _, tenant_id, messages, event_ids in owed:
        if messages is None:
            wanted[tenant_id].extend(event_ids)
    found: dict[str, Envelope] = {}
    for tenant_id, event_ids in wanted.items():
        found.update(load_envelopes(tenant_id, event_ids))
    rows: dict[int, str] = {}
    events: list[Owed] = []
    missing = 0
    for row_id, tenant_id, messages, event_ids in owed:
        rows[row_id] = tenant_id
        if messages is not None:
            for event_id, key, event_type, version, body in orjson.loads(messages):
                headers = [("event_id", event_id), ("event_type", event_type), ("tenant_id", tenant_id)]
                events.append(Owed(tenant_id, key, body, [*headers, ("schema_version", version)]))
            continue
        for event_id in event_ids:
            if event_id in found:
                events.append(_owed_of(found[event_id]))
            else:
                missing += 1
    return rows, events, missing


def _delete(row_ids: list[int]) -> None:
    if not row_ids:
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # one statement, one array parameter, whatever the count
            cursor.execute("DELETE FROM stream_outbox WHERE id = ANY(%s)", [row_ids])
    else:
        StreamOutbox.objects.filter(id__in=row_ids).delete()


class RoundResult(int):
    """Events sent by a round (an int), and whether some shard or tenant had to wait."""

    waited: bool = False


@dataclass
class _Round:
    waited: bool = False
    errors: list[str] = field(default_factory=list)


def _work_shards(shards: list[int], delivery: Delivery, limit: int, result: _Round, locked: list[int]) -> list[int]:
    """Inside the caller's transaction: lock shards in turn (skipping those another relay holds; the
    ones taken are added to `locked`) and produce their owed events until about `limit` were produced
    or `shards` is used up. Returns the rows to delete once Kafka acknowledged them; consumes
    `shards` from the front."""
    done: list[int] = []
    while shards and delivery.count < limit:
        shard = shards.pop(0)
        if not _try_lock(shard):
            continue
        locked.append(shard)
        rows, events, missing = _owed_rows(shard, limit - delivery.count)
        if missing:  # cannot happen while the event store is append-only; say so loudly if it does
            logger.error("%d events owed to the stream are not stored; skipping them", missing)
        refused: set[str] = set()
        for tenant_id in dict.fromkeys(rows.values()):
            try:
                delivery.topics.ensure(kafka.topic_for(tenant_id))
            except StreamError as exc:  # its rows wait; the shard's other tenants go on
                refused.add(tenant_id)
                result.waited = True
                result.errors.append(f"stream shard {shard} waits: {exc}")
        delivery.produce(e for e in events if e.tenant_id not in refused)
        done.extend(row_id for row_id, tenant_id in rows.items() if tenant_id not in refused)
    return done


def _owing_shards() -> set[int]:
    """The shards that owe rows now: one statement of 16 index probes, so an idle or keeping-up relay
    does not open a transaction, take a lock and query for every shard each round. Rows that arrive
    after it are picked up by the next round."""
    if connection.vendor != "postgresql":
        return set(range(SHARDS))
    with all_tenants_scope(), connection.cursor() as cursor:
        cursor.execute(
            # LIMIT 1 keeps each probe a probe: never flattened into a join over a deep backlog.
            "SELECT s FROM generate_series(0, %s) AS s, LATERAL (SELECT 1 FROM stream_outbox WHERE shard = s LIMIT 1) AS o",
            [SHARDS - 1],
        )
        return {row[0] for row in cursor.fetchall()}


def relay_round(producer, topics: Topics, limit: int | None = None) -> RoundResult:
    """One pass over every shard that owes rows (starting at a random one, so that several relays meet less): each
    group of shards that owes about `limit` events is one transaction holding their locks, one flush,
    one DELETE. A fatal producer error (the idempotent producer's state is lost) is raised: the caller
    needs a new producer."""
    from confluent_kafka import KafkaException

    from sentinai.kernel import dependencies

    limit = limit or settings.SENTINAI["KAFKA_RELAY_BATCH"]
    start = random.randrange(SHARDS)
    owing = _owing_shards()
    shards = [shard for shard in ((start + k) % SHARDS for k in range(SHARDS)) if shard in owing]
    result, sent_total = _Round(), 0
    while shards:
        try:
            with all_tenants_scope():  # the scope is the group's transaction (no savepoint inside it)
                delivery, locked = Delivery(producer, topics), []
                done = _work_shards(shards, delivery, limit, result, locked)
                sent = delivery.wait()
                _delete(done)
        except (StreamError, KafkaException) as exc:
            if isinstance(exc, KafkaException) and exc.args[0].fatal():
                raise
            # Nothing of this group was deleted: its rows are sent again next round; librdkafka
            # reconnects by itself.
            result.waited = True
            result.errors.append(f"stream shards {', '.join(map(str, locked))} wait: {exc}")
            if isinstance(exc, ClusterUnreachable):
                break  # the next round (after the relay's backoff) tries again
            continue
        sent_total += sent
        metrics.STREAM_PUBLISHED.inc(sent)
    if result.errors and not dependencies.is_down("kafka"):  # during an outage, one line (run_relay)
        for error in result.errors:
            logger.warning("%s", error)
    outcome = RoundResult(sent_total)
    outcome.waited = result.waited
    return outcome


def run_relay(*, idle_seconds: float = 0.2, should_stop: Callable[[], bool] = lambda: False) -> None:
    """The relay process: rounds until told to stop. Reconnects to the database by itself; Kafka's
    client reconnects on its own, and while Kafka is down rounds back off (rows only wait)."""
    from confluent_kafka import KafkaException
    from django.db import close_old_connections, connections

    from sentinai.kernel import dependencies

    producer, topics = new_producer(), Topics()
    backoff, down, fruitless = 0.5, False, 0
    while not should_stop():
        started = time.monotonic()
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
            fruitless += 1
            if fruitless >= FRESH_CLIENTS_AFTER_ROUNDS:
                # Clients that lived through a broker restart do not always recover (seen in CI: the
                # admin client's metadata requests kept failing minutes after the broker was back).
                logger.info("stream relay: %d rounds without a delivery; starting new Kafka clients", fruitless)
                producer, topics, fruitless = new_producer(), Topics(), 0
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
        else:
            fruitless = 0
            if sent:
                dependencies.up("kafka")
            backoff = 0.5
            if not sent:
                time.sleep(idle_seconds)
            else:
                time.sleep(linger_after(sent, time.monotonic() - started))


def linger_after(sent: int, took: float) -> float:
    """How long a relay waits after a round that sent `sent` events in `took` seconds: a round short
    of a batch is topped up to KAFKA_RELAY_LINGER_SECONDS, so that the next one finds more events per
    shard; a full round (the relay behind) goes on at once."""
    cfg = settings.SENTINAI
    if sent >= cfg["KAFKA_RELAY_BATCH"]:
        return 0.0
    return max(0.0, cfg["KAFKA_RELAY_LINGER_SECONDS"] - took)


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
