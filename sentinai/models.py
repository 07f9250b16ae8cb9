"""Platform core tables: tenants and keys, domain packs, the event store and the delivery machinery.

The delivery tables (outbox, processed_event, event_attempt, parked_event, dead_letter) carry
`tenant_id` as a plain column, not a foreign key: they sit on the hot path, are written in bulk, and
row-level security on `tenant_id` scopes them on PostgreSQL.
"""

from __future__ import annotations

import functools
import uuid

import pgtrigger
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Now
from rest_framework_api_key.models import AbstractAPIKey

from sentinai.kernel import ids

TENANT_SLUG = RegexValidator(
    r"^[a-z0-9][a-z0-9-]{1,62}$",
    "A tenant id is 2-63 lowercase letters, digits or hyphens, starting with a letter or digit.",
)


class Tenant(models.Model):
    id = models.CharField(primary_key=True, max_length=63, validators=[TENANT_SLUG])
    name = models.CharField(max_length=200)
    domain_pack = models.CharField(max_length=100)
    # Pack overrides for this tenant (SLA windows, thresholds, allowed tool hosts, ...).
    overrides = models.JSONField(default=dict, blank=True)
    # Admission control: token bucket (requests/s, burst) and the in-flight cap.
    rate_per_second = models.FloatField(default=200.0)
    burst = models.PositiveIntegerField(default=400)
    max_in_flight = models.PositiveIntegerField(default=100_000)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "tenant"
        ordering = ["id"]

    def __str__(self) -> str:
        return self.id


class Scope(models.TextChoices):
    """What an API key may do. Writes are only ever for the key's own tenant; `operate` widens reads.

    ingest: report exceptions (single, batch, manual). read: the query endpoints. approve: approve or
    reject, feedback, playbook recalculation, manual tool runs. operate: read every tenant's rows,
    replay or discard dead letters, re-drive stuck work.
    """

    INGEST = "ingest"
    READ = "read"
    APPROVE = "approve"
    OPERATE = "operate"


DEFAULT_SCOPES = (Scope.INGEST.value, Scope.READ.value)


def _default_scopes() -> list[str]:
    return list(DEFAULT_SCOPES)


class TenantAPIKey(AbstractAPIKey):
    """An API key of one tenant, stored as prefix + SHA-512 hash (djangorestframework-api-key).

    Its `name` is the actor recorded on every human action taken with it; its `scopes` say what it may do.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    scopes = models.JSONField(default=_default_scopes)

    @property
    def is_operator(self) -> bool:
        return Scope.OPERATE in self.scopes

    class Meta(AbstractAPIKey.Meta):
        db_table = "api_key"
        verbose_name = "API key"
        verbose_name_plural = "API keys"


class DomainPack(models.Model):
    """A loaded, validated version of a domain pack. Versions are immutable once loaded."""

    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField()
    definition = models.JSONField()
    checksum = models.CharField(max_length=64)
    source = models.CharField(max_length=500, blank=True)
    loaded_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "domain_pack"
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="domain_pack_version_uniq")]
        ordering = ["name", "-version"]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class ExceptionStream(models.Model):
    """The head of one exception's event stream. Appends lock this narrow row (not the wide exception
    projection), take the next gap-free sequence, and record per consumer the last event it subscribes
    to, from which each new event's ordering predecessor ("prev") is derived. Updated on every append,
    so its table leaves room on each page for HOT updates. Keyed by the exception's id; the
    exception row itself (the projection) belongs to exceptions_app, which the core does not depend on."""

    exception_id = models.UUIDField(primary_key=True)
    tenant_id = models.CharField(max_length=63)
    last_sequence = models.PositiveIntegerField(db_default=0)
    consumer_heads = models.JSONField(db_default={})

    class Meta:
        db_table = "exception_stream"

    def __str__(self) -> str:
        return f"stream of {self.exception_id} at #{self.last_sequence}"


class ExceptionEvent(models.Model):
    """One immutable event of the event store (docs/events.md lists the types). Append-only, enforced by a trigger."""

    event_id = models.UUIDField(primary_key=True)
    tenant_id = models.CharField(max_length=63)
    exception_id = models.UUIDField()
    event_type = models.CharField(max_length=64)
    schema_version = models.PositiveSmallIntegerField(default=1)
    sequence = models.PositiveIntegerField()
    causation_id = models.UUIDField(null=True, blank=True)
    producer = models.CharField(max_length=32)
    payload = models.JSONField(default=dict)
    # Delivery metadata fixed at append time: for each subscribed consumer, the previous event of
    # this exception that the consumer must apply first ("prev"); trace context.
    metadata = models.JSONField(default=dict)
    recorded_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "exception_event"
        constraints = [
            models.UniqueConstraint(fields=["exception_id", "sequence"], name="exception_event_seq_uniq"),
        ]
        # Time-range scans (stuck work, retention) use a BRIN index on recorded_at (PostgreSQL only,
        # created in migration 0002): nearly free to maintain on an append-only table.
        triggers = [
            pgtrigger.Protect(
                name="append_only",
                operation=pgtrigger.Update | pgtrigger.Delete,
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} #{self.sequence} of {self.exception_id}"


class Outbox(models.Model):
    """A batch of events owed to one agent queue.

    Written in the same transaction as the events. The publisher sends the batch as one message and
    stamps `published_at`; the consuming agent deletes the row in the transaction that processes the
    batch. Rows therefore stay until consumed, so the relay can re-offer what a broker lost.
    """

    tenant_id = models.CharField(max_length=63)
    queue = models.CharField(max_length=32)
    event_ids = models.JSONField()
    created_at = models.DateTimeField(db_default=Now())
    published_at = models.DateTimeField(null=True, blank=True)
    publish_count = models.PositiveIntegerField(db_default=0)
    last_error = models.TextField(blank=True, db_default="")

    class Meta:
        db_table = "outbox"
        indexes = [models.Index(fields=["created_at"], name="outbox_created")]

    def __str__(self) -> str:
        return f"outbox #{self.pk} -> {self.queue} ({len(self.event_ids)} events)"


class StreamOutbox(models.Model):
    """Events owed to the Kafka event stream (sentinai/eventstore/stream.py).

    Written by the event store's append in the transaction that records the events (no dual write):
    one row per append and shard, a shard being a fixed slice of exception ids. The relay publishes a
    shard's rows in id order while holding that shard's lock, and deletes them once Kafka acknowledged
    every event, so an exception's events reach its partition in sequence order whatever the number
    of relay processes.

    `messages` holds the row's events ready to produce, written by the append from the envelopes it
    just stored (with their recorded_at), so that the relay reads one column instead of looking every
    event up again: a JSON array of [event id, key, event type, schema version, value]. A row without it
    (owed by a version before 0010) is read back from the event store.
    """

    tenant_id = models.CharField(max_length=63)
    shard = models.PositiveSmallIntegerField()
    event_ids = models.JSONField()
    messages = models.TextField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "stream_outbox"
        indexes = [models.Index(fields=["shard", "id"], name="stream_outbox_shard")]

    def __str__(self) -> str:
        return f"stream outbox #{self.pk} shard {self.shard} ({len(self.event_ids)} events)"


class ProcessedEventQuerySet(models.QuerySet):
    def of(self, consumer: str, event_ids) -> ProcessedEventQuerySet:
        """Rows of `consumer` for these events (looked up by primary key)."""
        return self.filter(pk__in=[delivery_key(consumer, i) for i in event_ids])


class ProcessedEvent(models.Model):
    """Idempotency: one row per (consumer, event) applied, inserted in the batch transaction.

    The primary key is the pair itself, folded into one UUID (`delivery_key`): a single index to
    maintain on the hot path, and a key the admin can address."""

    id = models.UUIDField(primary_key=True)
    consumer = models.CharField(max_length=32)
    event_id = models.UUIDField()
    tenant_id = models.CharField(max_length=63)
    processed_at = models.DateTimeField(db_default=Now())

    objects = ProcessedEventQuerySet.as_manager()

    class Meta:
        db_table = "processed_event"

    def __str__(self) -> str:
        return f"{self.consumer}:{self.event_id}"


DELIVERY_NAMESPACE = uuid.UUID("a3c1f0de-5b7e-4d2a-9c61-2f8e4b7d9e03")


@functools.cache
def _consumer_mask(consumer: str) -> int:
    return uuid.uuid5(DELIVERY_NAMESPACE, consumer).int


def delivery_key(consumer: str, event_id: str | uuid.UUID) -> str:
    """The primary key of processed_event for (consumer, event_id): the event id masked (XOR) with a
    per-consumer constant. One consumer's keys are as distinct as its event ids; keys of different
    consumers meet only if two random event ids differ by exactly the XOR of two masks (~2^-122).
    Computed for every event on the hot path, so it is an XOR, not a hash."""
    return ids.xor(str(event_id), _consumer_mask(consumer))


class EventAttempt(models.Model):
    """A failed attempt of one consumer at one event: the retry record (docs/architecture.md, "Guarantees")."""

    class State(models.TextChoices):
        SCHEDULED = "scheduled"  # due at next_attempt_at
        OFFERED = "offered"  # re-offered to the agent queue
        DEAD_LETTERED = "dead_lettered"  # the last attempt; see DeadLetter

    tenant_id = models.CharField(max_length=63)
    consumer = models.CharField(max_length=32)
    event_id = models.UUIDField()
    exception_id = models.UUIDField()
    attempt = models.PositiveIntegerField()
    error = models.TextField()
    failed_at = models.DateTimeField(db_default=Now())
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.SCHEDULED)

    class Meta:
        db_table = "event_attempt"
        constraints = [
            models.UniqueConstraint(fields=["consumer", "event_id", "attempt"], name="event_attempt_uniq"),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="event_attempt_due",
                condition=models.Q(state="scheduled"),
            ),
            models.Index(fields=["tenant_id", "consumer", "event_id"], name="event_attempt_event"),
        ]

    def __str__(self) -> str:
        return f"{self.consumer}:{self.event_id} attempt {self.attempt}"


class ParkedEvent(models.Model):
    """An event that arrived before its predecessor (for the same consumer and exception)."""

    tenant_id = models.CharField(max_length=63)
    consumer = models.CharField(max_length=32)
    event_id = models.UUIDField()
    exception_id = models.UUIDField()
    waiting_for = models.UUIDField()
    # delivery_key(consumer, waiting_for): the processed_event row whose arrival releases this event.
    waiting_key = models.UUIDField()
    parked_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "parked_event"
        constraints = [
            models.UniqueConstraint(fields=["consumer", "event_id"], name="parked_event_uniq"),
        ]
        indexes = [models.Index(fields=["waiting_key"], name="parked_event_waiting")]

    def __str__(self) -> str:
        return f"{self.consumer}:{self.event_id} waits for {self.waiting_for}"


class DeadLetter(models.Model):
    """Work that could not be done: an event that failed its last attempt (source=handler), a
    message the broker dead-lettered (source=broker: undecodable, or it kept killing workers), or an
    outbox batch whose events cannot be loaded (source=outbox: it could never be sent)."""

    class Source(models.TextChoices):
        HANDLER = "handler"
        BROKER = "broker"
        OUTBOX = "outbox"

    class Status(models.TextChoices):
        OPEN = "open"
        REPLAYED = "replayed"
        DISCARDED = "discarded"

    # Null only for broker dead letters whose body names no tenant (undecodable messages).
    tenant_id = models.CharField(max_length=63, null=True, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    consumer = models.CharField(max_length=32)
    event_id = models.UUIDField(null=True, blank=True)
    exception_id = models.UUIDField(null=True, blank=True)
    event_ids = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    # Broker dead letters: the message id, body (as received) and headers (x-death, ...).
    message_id = models.CharField(max_length=200, null=True, blank=True)
    body = models.TextField(blank=True, default="")
    headers = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    replay_count = models.PositiveIntegerField(default=0)
    # Who replayed it last: an API key's name, "admin:<user>", or "manage.py".
    replayed_by = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "dead_letter"
        constraints = [
            models.UniqueConstraint(
                fields=["consumer", "event_id"],
                name="dead_letter_event_uniq",
                condition=models.Q(source="handler"),
            ),
            models.UniqueConstraint(
                fields=["message_id"],
                name="dead_letter_message_uniq",
                condition=models.Q(source="broker"),
            ),
        ]
        indexes = [
            models.Index(fields=["tenant_id", "status", "created_at"], name="dead_letter_tenant_status"),
        ]

    def __str__(self) -> str:
        return f"dead letter #{self.pk} ({self.consumer}, {self.status})"
