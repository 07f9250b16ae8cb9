"""The tool registry (per tenant, from its domain pack) and tool executions."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models.functions import Now

from exceptions_app.models import ExceptionRecord
from sentinai.models import Tenant


class ToolKind(models.TextChoices):
    BUILTIN = "builtin"
    HTTP = "http"


class Tool(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="tools")
    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField(default=1)
    kind = models.CharField(max_length=16, choices=ToolKind.choices)
    description = models.TextField(blank=True, default="")
    # builtin: {"callable": name}; http: {method, url, headers, body, timeout_seconds}.
    config = models.JSONField(default=dict)
    # May it run without a human? (policy guardrail, from the pack)
    auto_approved = models.BooleanField(default=False)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "tool"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name", "version"], name="tool_version_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version} ({self.kind})"


class ExecutionStatus(models.TextChoices):
    REQUESTED = "requested"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"


class ToolExecution(models.Model):
    """One requested tool action. Its id is the idempotency key sent with every attempt."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    # No database foreign keys on the hot path (docs/performance.md): each would cost a FOR KEY SHARE lookup
    # per inserted row. The references hold by construction - see the migration that dropped them.
    # Both indexed through the composite (tenant, ...) indexes below: every read of executions is a tenant's
    # (row-level security adds the tenant to any that is not), so single-column indexes beside them would only
    # be more index entries at each of an execution's three writes (docs/performance.md, "Only the indexes read").
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False)
    exception = models.ForeignKey(
        ExceptionRecord, on_delete=models.CASCADE, related_name="tool_executions", db_index=False, db_constraint=False
    )
    # Not indexed: no read looks executions up by tool id (the list filters by tool_name, which the tenant leads),
    # and tools are never deleted, only superseded by a new version (a pack load) or deactivated.
    tool = models.ForeignKey(
        Tool,
        on_delete=models.PROTECT,
        related_name="executions",
        null=True,
        blank=True,
        db_index=False,
        db_constraint=False,
    )
    tool_name = models.CharField(max_length=100)
    status = models.CharField(max_length=16, choices=ExecutionStatus.choices, default=ExecutionStatus.REQUESTED)
    attempts = models.PositiveSmallIntegerField(default=0)
    request = models.JSONField(default=dict, blank=True)
    response = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    requested_by = models.CharField(max_length=32, default="playbook")
    # The client's Idempotency-Key of a manual run (POST /api/tools/execute): one execution per tenant and key.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    requested_at = models.DateTimeField(db_default=Now())
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "tool_execution"
        indexes = [
            models.Index(fields=["tenant", "-requested_at", "-id"], name="tool_execution_tenant"),
            models.Index(fields=["tenant", "exception", "-requested_at"], name="tool_execution_exception"),
            models.Index(fields=["tenant", "status", "-requested_at", "-id"], name="tool_execution_status"),
            models.Index(fields=["tenant", "tool_name", "-requested_at", "-id"], name="tool_execution_tool"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="tool_execution_idempotency_uniq",
            )
        ]

    def __str__(self) -> str:
        return f"{self.tool_name} execution {self.id} ({self.status})"
