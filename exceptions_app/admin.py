from django.contrib import admin

from exceptions_app.models import ExceptionRecord, Feedback
from exceptions_app.selectors import exception_trace


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

    @admin.display(description="event chain (trace)")
    def event_chain(self, obj):
        from django.utils.html import format_html_join

        trace = exception_trace(tenant_id=obj.tenant_id, exception_id=str(obj.id))
        return format_html_join(
            "\n",
            "<div>#{} <b>{}</b> <small>by {} at {}; {} ms after #{} {}</small></div>",
            (
                (
                    s["sequence"],
                    s["event_type"],
                    f"{s['producer']} ({s['actor']})" if s["actor"] else s["producer"],
                    s["recorded_at"],
                    s["after_cause_ms"] if s["after_cause_ms"] is not None else "-",
                    s["caused_by"]["sequence"] if s["caused_by"] else "-",
                    s["caused_by"]["event_type"] if s["caused_by"] else "",
                )
                for s in trace["spans"]
            ),
        )


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    list_display = ("exception", "tenant", "kind", "outcome", "rating", "time_to_resolve_ms", "created_at")
    list_filter = ("tenant", "kind", "outcome")
