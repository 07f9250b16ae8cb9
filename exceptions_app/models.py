"""The exception record (the projection every query reads) and feedback."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models.functions import Now

from sentinai.eventstore.events import SEVERITIES
from sentinai.models import Tenant


class ExceptionStatus(models.TextChoices):
    RECEIVED = "received"
    NORMALIZED = "normalized"
    TRIAGED = "triaged"
    IN_PROGRESS = "in_progress"
    AWAITING_APPROVAL = "awaiting_approval"
    RESOLVED = "resolved"
    ESCALATED = "escalated"
    INVALID = "invalid"


TERMINAL_STATUSES = frozenset({ExceptionStatus.RESOLVED, ExceptionStatus.ESCALATED, ExceptionStatus.INVALID})


# Severity is defined once, in the event catalogue; these are its choices for the exception row.
Severity = models.TextChoices("Severity", [(name.upper(), name) for name in SEVERITIES])


class ExceptionRecord(models.Model):
    """One business exception: the projection every query reads. Its event stream's head (sequence,
    ordering metadata) is the narrow row sentinai.ExceptionStream, which appends lock."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    # Indexed through the composite (tenant, ...) indexes below.
    # No database foreign keys on the hot path (docs/performance.md): each would cost a FOR KEY SHARE lookup
    # per inserted row, all on the one tenant row. The references hold by construction - see the migration that dropped them.
    tenant = models.ForeignKey(
        Tenant, on_delete=models.PROTECT, related_name="exceptions", db_index=False, db_constraint=False
    )
    source_system = models.CharField(max_length=100)
    source_ref = models.CharField(max_length=200, null=True, blank=True)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    exception_type = models.CharField(max_length=100, null=True, blank=True)
    severity = models.CharField(max_length=16, choices=Severity.choices, null=True, blank=True)
    priority = models.PositiveSmallIntegerField(null=True, blank=True)
    status = models.CharField(
        max_length=24, choices=ExceptionStatus.choices, default=ExceptionStatus.RECEIVED, db_default="received"
    )
    manual = models.BooleanField(default=False, db_default=False)
    payload = models.JSONField(default=dict)  # redacted at the API before it is stored
    normalized = models.JSONField(default=dict, db_default={}, blank=True)
    invalid_reasons = models.JSONField(default=list, db_default=[], blank=True)
    pack_version = models.PositiveIntegerField(null=True, blank=True)
    occurred_at = models.DateTimeField(null=True, blank=True)
    sla_due_at = models.DateTimeField(null=True, blank=True)
    sla_imminent_at = models.DateTimeField(null=True, blank=True)
    sla_imminent_sent = models.BooleanField(default=False, db_default=False)
    sla_expired_sent = models.BooleanField(default=False, db_default=False)
    triaged_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "exception"
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "source_system", "source_ref"],
                name="exception_source_ref_uniq",
                condition=models.Q(source_ref__isnull=False),
            ),
            models.UniqueConstraint(
                fields=["tenant", "idempotency_key"],
                name="exception_idempotency_key_uniq",
                condition=models.Q(idempotency_key__isnull=False),
            ),
        ]
        indexes = [
            # Keyset pagination, newest first: (tenant, created_at, id) with and without filters.
            models.Index(fields=["tenant", "-created_at", "-id"], name="exception_tenant_created"),
            models.Index(fields=["tenant", "status", "-created_at", "-id"], name="exception_tenant_status"),
            models.Index(fields=["tenant", "severity", "-created_at", "-id"], name="exception_tenant_severity"),
            models.Index(fields=["tenant", "exception_type", "-created_at", "-id"], name="exception_tenant_type"),
            # Admission control's re-count of open exceptions per tenant (sentinai.tenancy.admission).
            models.Index(fields=["tenant"], name="exception_open", condition=models.Q(closed_at__isnull=True)),
            # The SLA monitor's scans: open exceptions by the next deadline they have not announced.
            models.Index(
                fields=["sla_imminent_at"],
                name="exception_sla_imminent_due",
                condition=models.Q(closed_at__isnull=True, sla_imminent_sent=False, sla_imminent_at__isnull=False),
            ),
            models.Index(
                fields=["sla_due_at"],
                name="exception_sla_expiry_due",
                condition=models.Q(closed_at__isnull=True, sla_expired_sent=False, sla_due_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}/{self.id}"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class Feedback(models.Model):
    class Kind(models.TextChoices):
        SYSTEM = "system"
        USER = "user"

    # No database foreign keys on the hot path (docs/performance.md): each would cost a FOR KEY SHARE lookup
    # per inserted row. The references hold by construction - see the migration that dropped them.
    # Both indexed through feedback_exception (tenant, exception, created_at).
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False)
    exception = models.ForeignKey(
        ExceptionRecord, on_delete=models.CASCADE, related_name="feedback", db_index=False, db_constraint=False
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    event_id = models.UUIDField(unique=True)
    outcome = models.CharField(max_length=32, blank=True, default="")
    time_to_triage_ms = models.BigIntegerField(null=True, blank=True)
    time_to_resolve_ms = models.BigIntegerField(null=True, blank=True)
    steps_run = models.PositiveIntegerField(null=True, blank=True)
    tool_failures = models.PositiveIntegerField(null=True, blank=True)
    rating = models.SmallIntegerField(null=True, blank=True)
    comment = models.TextField(blank=True, default="")
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "feedback"
        indexes = [models.Index(fields=["tenant", "exception", "created_at"], name="feedback_exception")]

    def __str__(self) -> str:
        return f"{self.kind} feedback on {self.exception_id}"
