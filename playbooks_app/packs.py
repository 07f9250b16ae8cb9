"""A tenant's domain pack as its playbook and step rows (registered with the core's pack binding in
apps.py). A run keeps the playbook version it started with, so older versions' rows stay, inactive."""

from __future__ import annotations

from playbooks_app.models import Playbook, PlaybookStep
from sentinai.models import Tenant
from sentinai.packs.domain import Pack


def bind_playbooks(tenant: Tenant, pack: Pack, version: int) -> dict[str, int]:
    created = 0
    for spec in pack.playbooks:
        playbook, made = Playbook.objects.get_or_create(
            tenant=tenant,
            name=spec.name,
            version=version,
            defaults={
                "pack": pack.name,
                "pack_version": version,
                "description": spec.description,
                "match": spec.match.model_dump(mode="json", by_alias=True, exclude_none=True),
                "priority": spec.priority,
            },
        )
        if made:
            PlaybookStep.objects.bulk_create(
                [
                    PlaybookStep(
                        playbook=playbook,
                        tenant=tenant,
                        position=position,
                        name=step.name,
                        action=step.action,
                        tool=step.tool or "",
                        params=step.params,
                        condition=step.when.model_dump(mode="json", by_alias=True, exclude_none=True)
                        if step.when
                        else {},
                    )
                    for position, step in enumerate(spec.steps, start=1)
                ]
            )
            created += 1
        elif not playbook.is_active:
            Playbook.objects.filter(pk=playbook.pk).update(is_active=True)
    Playbook.objects.filter(tenant=tenant).exclude(version=version).update(is_active=False)
    return {"playbooks": created}
