from django.contrib import admin

from playbooks_app.models import Playbook, PlaybookRun, PlaybookRunStep, PlaybookStep


class PlaybookStepInline(admin.TabularInline):
    model = PlaybookStep
    extra = 0
    can_delete = False
    readonly_fields = ("position", "name", "action", "tool", "params")


@admin.register(Playbook)
class PlaybookAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "tenant", "pack", "pack_version", "is_active", "created_at")
    list_filter = ("tenant", "pack", "is_active")
    inlines = [PlaybookStepInline]


@admin.register(PlaybookStep)
class PlaybookStepAdmin(admin.ModelAdmin):
    list_display = ("playbook", "position", "name", "action", "tool", "tenant")
    list_filter = ("tenant", "action")


class PlaybookRunStepInline(admin.TabularInline):
    model = PlaybookRunStep
    extra = 0
    can_delete = False
    readonly_fields = ("position", "name", "action", "status", "tool_execution_id", "started_at", "finished_at")


@admin.register(PlaybookRun)
class PlaybookRunAdmin(admin.ModelAdmin):
    list_display = ("id", "exception", "playbook", "status", "current_position", "started_at", "finished_at")
    list_filter = ("tenant", "status")
    inlines = [PlaybookRunStepInline]


@admin.register(PlaybookRunStep)
class PlaybookRunStepAdmin(admin.ModelAdmin):
    list_display = ("run", "position", "name", "action", "status", "started_at", "finished_at")
    list_filter = ("tenant", "status", "action")
