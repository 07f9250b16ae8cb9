"""Admin for the platform core. Admin requests run in an all-tenants scope (tenancy middleware); the
event store and delivery records are read-only here."""

from django.contrib import admin, messages
from rest_framework_api_key.admin import APIKeyModelAdmin

from sentinai.models import (
    DeadLetter,
    DomainPack,
    EventAttempt,
    ExceptionEvent,
    ExceptionStream,
    Outbox,
    ParkedEvent,
    ProcessedEvent,
    StreamOutbox,
    Tenant,
    TenantAPIKey,
)
from sentinai.ops import deadletters, lanes, stuck


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "domain_pack", "rate_per_second", "burst", "max_in_flight", "is_active", "created_at")
    list_filter = ("domain_pack", "is_active")
    search_fields = ("id", "name")


@admin.register(TenantAPIKey)
class TenantAPIKeyAdmin(APIKeyModelAdmin):
    list_display = (*APIKeyModelAdmin.list_display, "tenant", "scopes")
    list_filter = ("tenant", "revoked")


@admin.register(DomainPack)
class DomainPackAdmin(ReadOnlyAdmin):
    list_display = ("name", "version", "checksum", "source", "loaded_at")
    list_filter = ("name",)


@admin.register(ExceptionStream)
class ExceptionStreamAdmin(ReadOnlyAdmin):
    list_display = ("exception_id", "tenant_id", "last_sequence")
    list_filter = ("tenant_id",)
    search_fields = ("=exception_id",)
    show_full_result_count = False


@admin.register(ExceptionEvent)
class ExceptionEventAdmin(ReadOnlyAdmin):
    list_display = ("event_type", "tenant_id", "exception_id", "sequence", "producer", "causation_id", "recorded_at")
    list_filter = ("tenant_id", "event_type", "producer")
    search_fields = ("=exception_id", "=event_id", "=causation_id")
    ordering = ("-recorded_at",)
    show_full_result_count = False


class StuckFilter(admin.SimpleListFilter):
    """Rows waiting longer than the stuck-work threshold (5 minutes)."""

    title = "stuck"
    parameter_name = "stuck"
    field = "created_at"

    def lookups(self, request, model_admin):
        return [("yes", f"waiting over {stuck.DEFAULT_THRESHOLD_SECONDS // 60} minutes")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(**{f"{self.field}__lt": stuck.before(stuck.DEFAULT_THRESHOLD_SECONDS)})
        return queryset


@admin.register(StreamOutbox)
class StreamOutboxAdmin(ReadOnlyAdmin):
    """Events owed to the Kafka event stream; the relay deletes a row once Kafka acknowledged it."""

    list_display = ("id", "tenant_id", "shard", "created_at")
    list_filter = ("tenant_id", "shard")
    show_full_result_count = False


@admin.register(Outbox)
class OutboxAdmin(ReadOnlyAdmin):
    list_display = ("id", "tenant_id", "queue", "created_at", "published_at", "publish_count", "last_error")
    list_filter = (StuckFilter, "tenant_id", "queue", ("published_at", admin.EmptyFieldListFilter))
    show_full_result_count = False
    actions = ("redrive",)

    @admin.action(description="Re-drive: publish these batches again now")
    def redrive(self, request, queryset):
        count = stuck.redrive_outbox_all_tenants(list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"Published {count} batch(es) again.", messages.SUCCESS)


@admin.register(ProcessedEvent)
class ProcessedEventAdmin(ReadOnlyAdmin):
    list_display = ("consumer", "event_id", "tenant_id", "processed_at")
    list_filter = ("tenant_id", "consumer")
    search_fields = ("=event_id",)
    show_full_result_count = False


@admin.register(EventAttempt)
class EventAttemptAdmin(ReadOnlyAdmin):
    list_display = ("consumer", "event_id", "tenant_id", "attempt", "state", "failed_at", "next_attempt_at", "error")
    list_filter = ("tenant_id", "consumer", "state")
    search_fields = ("=event_id", "=exception_id", "error")


class ParkedStuckFilter(StuckFilter):
    field = "parked_at"


@admin.register(ParkedEvent)
class ParkedEventAdmin(ReadOnlyAdmin):
    list_display = ("consumer", "event_id", "tenant_id", "exception_id", "waiting_for", "parked_at")
    list_filter = (ParkedStuckFilter, "tenant_id", "consumer")
    search_fields = ("=event_id", "=exception_id", "=waiting_for")
    actions = ("reoffer",)

    @admin.action(description="Re-offer to their agent (parks again if still blocked)")
    def reoffer(self, request, queryset):
        count = stuck.reoffer_parked_all_tenants(list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"Re-offered {count} event(s).", messages.SUCCESS)


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "tenant_id",
        "consumer",
        "source",
        "status",
        "attempts",
        "replay_count",
        "short_error",
        "created_at",
    )
    list_filter = ("tenant_id", "consumer", "source", "status")
    search_fields = ("error", "=event_id", "=exception_id", "message_id")
    readonly_fields = [f.name for f in DeadLetter._meta.fields]
    actions = ("replay_selected", "discard_selected")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="error")
    def short_error(self, obj):
        return obj.error[:120]

    @admin.action(description="Replay selected dead letters (their events run again)")
    def replay_selected(self, request, queryset):
        letters = [letter for letter in queryset if letter.status != DeadLetter.Status.DISCARDED]
        replayable = [letter for letter in letters if letter.tenant_id and letter.event_ids]
        count = deadletters.replay(replayable, actor=f"admin:{request.user.get_username()}")
        self.message_user(request, f"Replayed {count} dead letter(s).", messages.SUCCESS)
        if len(replayable) < len(letters):
            self.message_user(
                request,
                f"{len(letters) - len(replayable)} hold no events (undecodable); discard them.",
                messages.WARNING,
            )

    @admin.action(description="Discard selected dead letters (give up for good)")
    def discard_selected(self, request, queryset):
        count = deadletters.discard(list(queryset))
        self.message_user(request, f"Discarded {count} dead letter(s).", messages.SUCCESS)


DEEPEST_LANES = 8
_index = admin.site.index


def index_with_deepest_lanes(request, extra_context=None):
    """The admin's overview, with the deepest lanes on top (docs/runbook.md, "Lanes")."""
    try:
        deepest = lanes.lane_depths_all_tenants()[:DEEPEST_LANES]
    except Exception:  # the overview still answers while the broker does not
        deepest = None
    return _index(request, {**(extra_context or {}), "deepest_lanes": deepest})


admin.site.index = index_with_deepest_lanes  # its template: admin/sentinai/index.html (admin_site.py)
