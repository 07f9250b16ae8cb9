from django.contrib import admin

from exceptions_app.models import ExceptionRecord, Feedback
from sentinai.models import ExceptionEvent


@admin.register(ExceptionRecord)
class ExceptionRecordAdmin(admin.ModelAdmin):
    list_display = ("id", "tenant", "exception_type", "severity", "status", "source_system", "source_ref", "created_at")
    list_filter = ("tenant", "status", "severity", "exception_type")
    search_fields = ("=id", "source_ref")
    ordering = ("-created_at",)
    show_full_result_count = False
    readonly_fields = [f.name for f in ExceptionRecord._meta.fields] + ["event_chain"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="event chain")
    def event_chain(self, obj):
        from django.utils.html import format_html_join

        events = ExceptionEvent.objects.filter(exception_id=obj.id).order_by("sequence")
        return format_html_join(
            "\n",
            "<div>#{} {} <small>by {} at {} (caused by {})</small></div>",
            ((e.sequence, e.event_type, e.producer, e.recorded_at, e.causation_id or "-") for e in events),
        )


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    list_display = ("exception", "tenant", "kind", "outcome", "rating", "time_to_resolve_ms", "created_at")
    list_filter = ("tenant", "kind", "outcome")
