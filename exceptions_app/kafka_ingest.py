"""Kafka ingest: source systems publish exceptions to topics; each is taken in as if POSTed to
/api/exceptions/{tenant}.

- **Config names the tenant**, never the message: SENTINAI["KAFKA_INGEST_TOPICS"] = {"topic": "tenant"}.
- **Same path as the API**: a message value is the JSON body the endpoint accepts, checked by
  IngestSerializer, redacted and stored by the same services (`exception_from_report`,
  `exceptions_ingest_admitted`), de-duplicated by (source_system, source_ref) and by an
  `Idempotency-Key` message header, under the tenant's admission limits. A type the tenant's domain
  pack does not know is stored, as over HTTP, and intake marks it invalid with its reasons.
- **Nothing accepted is lost**: offsets are committed (synchronously, auto-commit off) only after the
  transaction holding the exceptions committed, so a crash re-reads them; exceptions with a source_ref
  or an Idempotency-Key are then de-duplicated, others may be stored twice (at least once).
- **Backpressure, not drops**: when admission refuses, the partition is paused, rewound to the refused
  message and resumed after the Retry-After (at most MAX_PAUSE_SECONDS, so a raised limit is noticed).
- **Invalid messages** (not JSON, failing the API's validation, oversized) go to `<topic>.rejected`
  with the original key, value and headers plus `rejected_reason` and `rejected_from`
  (topic/partition/offset); their offset is committed once Kafka acknowledged the copy.
- **Outages**: librdkafka reconnects to Kafka by itself; the database's OperationalError rewinds the
  partition and retries with bounded backoff. One log line when an outage starts, one when it ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections
from redis.exceptions import RedisError

from exceptions_app import services
from exceptions_app.serializers import IngestSerializer
from sentinai.eventstore.stream import StreamError, Topics
from sentinai.kernel import kafka, metrics
from sentinai.models import Tenant
from sentinai.packs.rules import pii_rules_for
from sentinai.tenancy import admission, tenants

logger = logging.getLogger(__name__)

REJECTED_SUFFIX = ".rejected"
# A paused partition is retried at least this often, so a tenant whose limit was raised resumes soon.
MAX_PAUSE_SECONDS = 5.0
# The serializer checks the payload's size exactly; this only keeps an absurd value from being parsed.
RAW_LIMIT_FACTOR = 2
BATCH = 500
FLUSH_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str


class Unavailable(RuntimeError):
    """Something this process depends on is down; the messages are read again later."""


def ingest_topics() -> dict[str, str]:
    """{"topic": "tenant_id"} from the settings, checked: a clear error instead of a silent consumer."""
    topics = settings.SENTINAI.get("KAFKA_INGEST_TOPICS") or {}
    if not isinstance(topics, dict) or not topics:
        raise ValueError('SENTINAI_KAFKA_INGEST_TOPICS must be a JSON object {"topic": "tenant_id"}, non-empty')
    for topic, tenant_id in topics.items():
        if not isinstance(topic, str) or not topic or not isinstance(tenant_id, str) or not tenant_id:
            raise ValueError(f"SENTINAI_KAFKA_INGEST_TOPICS: {topic!r} -> {tenant_id!r} is not topic -> tenant id")
        if topic.endswith(REJECTED_SUFFIX):
            raise ValueError(f"SENTINAI_KAFKA_INGEST_TOPICS: {topic!r} is a rejected-messages topic")
    missing = sorted(
        set(topics.values()) - set(Tenant.objects.filter(id__in=topics.values()).values_list("id", flat=True))
    )
    if missing:
        raise ValueError(f"SENTINAI_KAFKA_INGEST_TOPICS names tenants that do not exist: {', '.join(missing)}")
    return dict(topics)


def parse(value: bytes | None, headers: list[tuple[str, bytes | None]], rules) -> services.NewException | Rejection:
    """A message as the API would take its body and Idempotency-Key header, or why it is refused."""
    limit = settings.SENTINAI["MAX_PAYLOAD_BYTES"] * RAW_LIMIT_FACTOR
    if value is None:
        return Rejection("not-json: the message has no value")
    if len(value) > limit:
        return Rejection(f"oversized: {len(value)} bytes, at most {limit} accepted")
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return Rejection(f"not-json: {exc}")
    if not isinstance(body, dict):
        return Rejection("invalid: the value must be a JSON object")
    serializer = IngestSerializer(data=body)
    if not serializer.is_valid():
        return Rejection("invalid: " + orjson.dumps(serializer.errors).decode())
    # An exception type the tenant's pack does not know is accepted, as over HTTP: intake records it as
    # ExceptionValidationFailed (invalid, with reasons), so it stays in the tenant's history.
    try:
        key = header(headers, "Idempotency-Key")
        key = services.idempotency_key_clean(key)
    except (UnicodeDecodeError, ValueError) as exc:
        return Rejection(f"invalid: Idempotency-Key header {exc}")
    return services.exception_from_report(serializer.validated_data, rules, idempotency_key=key)


def header(headers: list[tuple[str, bytes | None]], name: str) -> str | None:
    """A header's value, its name matched case-insensitively as HTTP's are."""
    for key, raw in headers:
        if key.lower() == name.lower() and raw is not None:
            return raw.decode()
    return None


class IngestConsumer:
    """The consumer loop. One `step` reads up to BATCH messages and takes each partition's run of them
    in: rejected copies first (acknowledged by Kafka), then the admitted exceptions in one transaction,
    then the offset after the last message handled."""

    def __init__(self, topics: dict[str, str], group: str):
        from confluent_kafka import Consumer, Producer

        self.topics = topics
        self.consumer = Consumer(
            kafka.client_config(
                **{
                    "group.id": group,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "max.poll.interval.ms": 600_000,
                    "error_cb": self._kafka_error,
                }
            )
        )
        self.producer = Producer(
            kafka.client_config(**{"enable.idempotence": True, "acks": "all", "message.timeout.ms": 20_000})
        )
        self.rejected_topics = Topics()
        self.paused: dict[tuple[str, int], float] = {}  # partition -> when to resume
        self.rewound: dict[tuple[str, int], int] = {}  # partition -> offset the next message must have
        self.uncommitted: dict[tuple[str, int], int] = {}  # offsets whose commit failed, to retry
        self.throttled: set[tuple[str, int]] = set()  # partitions admission control holds back
        self.down: set[str] = set()  # what is unreachable now: "database", "admission control", "Kafka"
        self.backoff = 0.5
        self.consumer.subscribe(list(topics), on_revoke=self._revoked)

    # --- outages ------------------------------------------------------------------------------

    def _kafka_error(self, error) -> None:
        from confluent_kafka import KafkaError

        if error.code() == KafkaError._ALL_BROKERS_DOWN and "Kafka" not in self.down:
            logger.warning("kafka ingest: Kafka unreachable, librdkafka keeps reconnecting: %s", error.str())
            self.down.add("Kafka")
        elif error.fatal():
            logger.error("kafka ingest: fatal Kafka error: %s", error.str())

    def _revoked(self, _consumer, partitions) -> None:
        for p in partitions:
            key = (p.topic, p.partition)
            if key in self.uncommitted:  # last chance: the next owner would read them again
                self._commit(key, self.uncommitted[key])
            self.paused.pop(key, None)
            self.rewound.pop(key, None)
            self.uncommitted.pop(key, None)
            self.throttled.discard(key)

    # --- the loop -----------------------------------------------------------------------------

    def run(self, should_stop: Callable[[], bool]) -> None:
        try:
            while not should_stop():
                self.step(timeout=0.5)
        finally:
            self.close()

    def close(self) -> None:
        self._retry_commits()
        self.consumer.close()
        self.producer.flush(FLUSH_TIMEOUT)

    def step(self, timeout: float = 1.0) -> int:
        """Read and take in what is there; returns the messages whose offsets were committed."""
        from confluent_kafka import KafkaError

        self._resume_due()
        self._retry_commits()
        messages = self.consumer.consume(num_messages=BATCH, timeout=timeout)
        runs: dict[tuple[str, int], list] = {}
        for message in messages:
            if message.error():
                if message.error().code() != KafkaError._PARTITION_EOF:
                    logger.warning("kafka ingest: %s", message.error().str())
                continue
            self._up("Kafka")
            key = (message.topic(), message.partition())
            if key in self.paused:
                continue  # fetched before the pause; read again from the rewound offset
            if key in self.rewound:
                if message.offset() != self.rewound[key]:
                    continue
                del self.rewound[key]
            runs.setdefault(key, []).append(message)
        done = 0
        for key, run in runs.items():
            done += self._take_in(key, run)
        return done

    def _take_in(self, key: tuple[str, int], run: list) -> int:
        topic, first = key[0], run[0].offset()
        try:
            tenant = tenants.get(self.topics[topic])
            if tenant is None or not tenant.is_active:
                logger.warning(
                    "kafka ingest: tenant %s of %s is missing or inactive; waiting", self.topics[topic], topic
                )
                self._pause(key, first, 30.0)
                return 0
            rules = pii_rules_for(tenant)
        except (OperationalError, InterfaceError) as exc:
            self._outage("database", key, first, exc)
            return 0

        handled, admitted, rejected = [], [], []
        refused: tuple[object, admission.Refusal] | None = None
        try:
            for message in run:
                outcome = parse(message.value(), message.headers() or [], rules)
                if isinstance(outcome, Rejection):
                    rejected.append((message, outcome.reason))
                else:
                    refusal = admission.admit(tenant, 1)
                    if refusal:
                        refused = (message, refusal)
                        break
                    admitted.append(outcome)
                handled.append(message)
            self._up("admission control")
        except RedisError as exc:
            self._release_quietly(tenant.id, len(admitted))
            self._outage("admission control", key, first, exc)
            return 0

        try:
            if rejected:
                self._send_rejected(topic, rejected)
        except Unavailable as exc:  # nothing stored yet
            self._release_quietly(tenant.id, len(admitted))
            logger.warning("kafka ingest: %s/%d waits: %s", *key, exc)
            self._pause(key, first, self._next_backoff())
            return 0
        stored = []
        try:
            if admitted:  # the in-flight room is handed back by the service when this raises
                stored = services.exceptions_ingest_admitted(tenant_id=tenant.id, items=admitted)
        except (OperationalError, InterfaceError) as exc:
            self._outage("database", key, first, exc)
            return 0
        except LookupError as exc:  # a concurrent conflicting insert rolled back: read them again
            logger.warning("kafka ingest: %s/%d read again: %s", *key, exc)
            self._pause(key, first, self._next_backoff())
            return 0
        except DatabaseError as exc:
            # Not an outage, so retrying may not help; but dropping would lose accepted work: wait loudly.
            logger.error("kafka ingest: %s/%d cannot be stored (%s); retrying", *key, exc)
            self._pause(key, first, self._next_backoff())
            return 0
        self._up("database")
        self.backoff = 0.5
        metrics.KAFKA_INGESTED.inc(sum(1 for r in stored if not r.deduplicated))
        metrics.KAFKA_REJECTED.inc(len(rejected))
        if handled:
            self._commit(key, handled[-1].offset() + 1)
        if refused is not None:
            message, refusal = refused
            metrics.REFUSED.labels(metrics.tenant_label(tenant.id), refusal.limit).inc()
            if key not in self.throttled:
                logger.warning("kafka ingest: %s/%d paused by admission control: %s", *key, refusal.detail)
                self.throttled.add(key)
            self._pause(key, message.offset(), min(refusal.retry_after, MAX_PAUSE_SECONDS))
        elif key in self.throttled:
            logger.info("kafka ingest: %s/%d admitted again", *key)
            self.throttled.discard(key)
        return len(handled)

    # --- pieces -------------------------------------------------------------------------------

    def _send_rejected(self, topic: str, rejected: list) -> None:
        """Copy refused messages to `<topic>.rejected` and wait until Kafka acknowledged each."""
        from confluent_kafka import KafkaException

        target = topic + REJECTED_SUFFIX
        try:
            self.rejected_topics.ensure(target)
        except StreamError as exc:
            raise Unavailable(str(exc)) from exc
        failures: list[str] = []

        def delivered(err, _msg):
            if err is not None:
                failures.append(err.str())

        for message, reason in rejected:
            source = f"{message.topic()}/{message.partition()}/{message.offset()}"
            headers = [
                *(message.headers() or []),
                ("rejected_reason", reason.encode()),
                ("rejected_from", source.encode()),
            ]
            try:
                self.producer.produce(
                    target, key=message.key(), value=message.value(), headers=headers, on_delivery=delivered
                )
            except (BufferError, KafkaException) as exc:
                raise Unavailable(f"cannot queue a rejected message for {target}: {exc}") from exc
        remaining = self.producer.flush(FLUSH_TIMEOUT)
        if remaining or failures:
            raise Unavailable(
                f"{target}: {remaining} rejected messages undelivered, {len(failures)} failed {failures[:1]}"
            )
        for message, reason in rejected:
            logger.info(
                "kafka ingest: rejected %s/%d/%d: %s",
                message.topic(),
                message.partition(),
                message.offset(),
                reason[:200],
            )

    def _commit(self, key: tuple[str, int], offset: int) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        try:
            self.consumer.commit(offsets=[TopicPartition(key[0], key[1], offset)], asynchronous=False)
            self.uncommitted.pop(key, None)
        except KafkaException as exc:
            # The exceptions are stored: keep the offset and commit it again, rather than re-read them.
            logger.warning("kafka ingest: committing %s/%d@%d failed, will retry: %s", *key, offset, exc.args[0].str())
            self.uncommitted[key] = max(offset, self.uncommitted.get(key, 0))

    def _retry_commits(self) -> None:
        for key, offset in list(self.uncommitted.items()):
            self._commit(key, offset)

    def _pause(self, key: tuple[str, int], offset: int, seconds: float) -> None:
        """Stop reading the partition and rewind it to `offset`, the first message not taken in."""
        from confluent_kafka import KafkaException, TopicPartition

        partition = TopicPartition(key[0], key[1], offset)
        self.consumer.pause([partition])
        try:
            self.consumer.seek(partition)
        except KafkaException as exc:
            logger.warning("kafka ingest: seeking %s/%d to %d failed: %s", *key, offset, exc.args[0].str())
        self.paused[key] = time.monotonic() + max(0.05, seconds)
        self.rewound[key] = offset

    def _resume_due(self) -> None:
        from confluent_kafka import TopicPartition

        now = time.monotonic()
        due = [key for key, at in self.paused.items() if at <= now]
        if due:
            self.consumer.resume([TopicPartition(t, p) for t, p in due])
            for key in due:
                del self.paused[key]

    def _next_backoff(self) -> float:
        current = self.backoff
        self.backoff = min(self.backoff * 2, 10.0)
        return current

    def _outage(self, what: str, key: tuple[str, int], offset: int, exc: Exception) -> None:
        """`what` is unreachable: log it once, rewind the partition and try again after a backoff."""
        if what not in self.down:
            logger.warning("kafka ingest: %s unreachable, retrying: %s", what, exc)
            self.down.add(what)
        if what == "database":
            close_old_connections()
        self._pause(key, offset, self._next_backoff())

    def _up(self, what: str) -> None:
        if what in self.down:
            logger.info("kafka ingest: %s reachable again", what)
            self.down.discard(what)

    @staticmethod
    def _release_quietly(tenant_id: str, count: int) -> None:
        try:
            admission.release(tenant_id, count)
        except RedisError:
            pass  # the scheduler re-counts in-flight exceptions from the database
