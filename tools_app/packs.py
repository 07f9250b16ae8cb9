"""A tenant's domain pack as its tool rows (registered with the core's pack binding in apps.py)."""

from __future__ import annotations

from sentinai.models import Tenant
from sentinai.packs.domain import Pack, Tool
from tools_app.models import Tool as ToolRow


def bind_tools(tenant: Tenant, pack: Pack, version: int) -> dict[str, int]:
    """One row per tool of this pack version (overrides["tools"][name] replaces fields of a tool, e.g.
    the tenant's own webhook URL, validated like the pack's own definition); other versions' rows go
    inactive."""
    created = 0
    tool_overrides = (tenant.overrides or {}).get("tools") or {}
    for name, tool in pack.tools.items():
        if name in tool_overrides:
            tool = Tool.model_validate({**tool.model_dump(mode="json"), **tool_overrides[name]})
        _, made = ToolRow.objects.update_or_create(
            tenant=tenant,
            name=name,
            version=version,
            defaults={
                "kind": tool.kind,
                "description": tool.description,
                "config": tool.model_dump(mode="json", exclude={"kind", "description", "max_attempts"}),
                "auto_approved": name in pack.policies.auto_tools,
                "max_attempts": tool.max_attempts,
                "is_active": True,
            },
        )
        created += made
    ToolRow.objects.filter(tenant=tenant).exclude(version=version).update(is_active=False)
    return {"tools": created}
