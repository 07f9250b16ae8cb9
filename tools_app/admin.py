from django.contrib import admin

from tools_app.models import Tool, ToolExecution


@admin.register(Tool)
class ToolAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "tenant", "kind", "auto_approved", "max_attempts", "is_active")
    list_filter = ("tenant", "kind", "is_active")


@admin.register(ToolExecution)
class ToolExecutionAdmin(admin.ModelAdmin):
    list_display = ("id", "tool_name", "tenant", "exception", "status", "attempts", "requested_at", "finished_at")
    list_filter = ("tenant", "status", "tool_name")
    search_fields = ("=id", "=exception__id")
    show_full_result_count = False
