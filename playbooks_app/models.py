"""Playbooks (materialised per tenant from its domain pack version) and per-exception runs."""

from __future__ import annotations

import enum
import uuid

from django.db import models
from django.db.models.functions import Now

from exceptions_app.models import ExceptionRecord
from playbooks_app import domain
from sentinai.models import Tenant


def _choices(values: type[enum.StrEnum]) -> type[models.TextChoices]:
    """The Django choices of a pure enum of playbooks_app.domain: its values are defined only there."""
    return models.TextChoices(values.__name__, [(m.name, m.value) for m in values], module=__name__)


StepAction = _choices(domain.StepAction)
RunStatus = _choices(domain.RunStatus)
StepStatus = _choices(domain.StepStatus)


class Playbook(models.Model):
    """An immutable version of a playbook. Editing a pack creates a new version; runs keep theirs."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="playbooks")
    pack = models.CharField(max_length=100)
    pack_version = models.PositiveIntegerField()
    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField()
    description = models.TextField(blank=True, default="")
    match = models.JSONField(default=dict)
    priority = models.IntegerField(default=0)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "playbook"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name", "version"], name="playbook_version_uniq"),
        ]
        indexes = [models.Index(fields=["tenant", "is_active"], name="playbook_tenant_active")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version} ({self.tenant_id})"


class PlaybookStep(models.Model):
    playbook = models.ForeignKey(Playbook, on_delete=models.CASCADE, related_name="steps")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=100)
    action = models.CharField(max_length=16, choices=StepAction.choices)
    tool = models.CharField(max_length=100, blank=True, default="")
    params = models.JSONField(default=dict, blank=True)
    # The step runs only when this condition holds (sentinai.packs.conditions); empty: always.
    condition = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "playbook_step"
        ordering = ["playbook", "position"]
        constraints = [
            models.UniqueConstraint(fields=["playbook", "position"], name="playbook_step_position_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.position}. {self.name} ({self.action})"


class PlaybookRun(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    # No database foreign keys on the hot path (docs/performance.md): each would cost a FOR KEY SHARE lookup
    # per inserted row. The references hold by construction - see the migration that dropped them.
    # Indexed through playbook_run_exception (tenant, exception, ...): a tenant-only index beside it would be
    # one more index entry for every run version written (docs/performance.md, "Only the indexes read").
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False)
    # The exception is indexed through playbook_run_exception too; the playbook is not indexed: no read looks runs
    # up by playbook, and playbooks are never deleted, only superseded by a new pack version.
    exception = models.ForeignKey(
        ExceptionRecord, on_delete=models.CASCADE, related_name="playbook_runs", db_index=False, db_constraint=False
    )
    playbook = models.ForeignKey(
        Playbook, on_delete=models.PROTECT, related_name="runs", db_index=False, db_constraint=False
    )
    status = models.CharField(max_length=24, choices=RunStatus.choices, default=RunStatus.RUNNING)
    current_position = models.PositiveSmallIntegerField(default=0)
    # The policy decision the run started under (requires_approval, auto_tools); step conditions read it.
    policy = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(db_default=Now())
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "playbook_run"
        indexes = [models.Index(fields=["tenant", "exception", "-started_at"], name="playbook_run_exception")]

    def __str__(self) -> str:
        return f"run {self.id} of {self.playbook_id} ({self.status})"


class PlaybookRunStep(models.Model):
    # No database foreign keys on the hot path (docs/performance.md): each would cost a FOR KEY SHARE lookup
    # per inserted row. The references hold by construction - see the migration that dropped them.
    # Indexed through playbook_run_step_uniq (run, position); the tenant is read only beside the run.
    run = models.ForeignKey(
        PlaybookRun, on_delete=models.CASCADE, related_name="steps", db_index=False, db_constraint=False
    )
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False)
    position = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=100)
    action = models.CharField(max_length=16, choices=StepAction.choices)
    status = models.CharField(max_length=24, choices=StepStatus.choices, default=StepStatus.PENDING)
    tool_execution_id = models.UUIDField(null=True, blank=True)
    output = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "playbook_run_step"
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "position"], name="playbook_run_step_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.position}. {self.name} ({self.status})"
