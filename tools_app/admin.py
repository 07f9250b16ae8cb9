from django.contrib import admin, messages

from tools_app import stuck
from tools_app.models import Tool, ToolExecution


@admin.register(Tool)
class ToolAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "tenant", "kind", "auto_approved", "max_attempts", "is_active")
    list_filter = ("tenant", "kind", "is_active")


class StuckRunningFilter(admin.SimpleListFilter):
    title = "stuck"
    parameter_name = "stuck"

    def lookups(self, request, model_admin):
        return [("yes", f"running over {stuck.DEFAULT_THRESHOLD_SECONDS // 60} minutes")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            ids = [e.id for e in stuck.stuck_tool_executions_all_tenants()]
            return queryset.filter(id__in=ids)
        return queryset


@admin.register(ToolExecution)
class ToolExecutionAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "tool_name",
        "tenant",
        "exception",
        "status",
        "attempts",
        "requested_at",
        "updated_at",
        "finished_at",
    )
    list_filter = (StuckRunningFilter, "tenant", "status", "tool_name")
    search_fields = ("=id", "=exception__id")
    show_full_result_count = False
    actions = ("redrive",)

    @admin.action(description="Re-drive: offer the execution to the tool agent again (same idempotency key)")
    def redrive(self, request, queryset):
        count = stuck.redrive_tool_executions(list(queryset))
        self.message_user(request, f"Re-drove {count} execution(s).", messages.SUCCESS)
