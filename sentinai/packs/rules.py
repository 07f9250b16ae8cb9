"""What the API needs from a tenant's domain pack before anything is stored: its PII rules."""

from __future__ import annotations

import time

from sentinai.models import DomainPack, Tenant
from sentinai.packs import pii

CACHE_SECONDS = 30.0
_cache: dict[tuple[str, str], tuple[float, pii.Rules]] = {}


def pii_rules_for(tenant: Tenant) -> pii.Rules:
    """PII fields and national-id patterns of the latest loaded version of the tenant's pack, plus the
    tenant's overrides (overrides["pii"] = {"fields": [...], "patterns": [...]})."""
    key = (tenant.id, tenant.domain_pack)
    now = time.monotonic()
    hit = _cache.get(key)
    if hit and now - hit[0] < CACHE_SECONDS:
        return hit[1]
    definition = (
        DomainPack.objects.filter(name=tenant.domain_pack)
        .order_by("-version")
        .values_list("definition", flat=True)
        .first()
        or {}
    )
    declared = definition.get("pii") or {}
    extra = (tenant.overrides or {}).get("pii") or {}
    rules = pii.Rules.of(
        fields=[*declared.get("fields", []), *extra.get("fields", [])],
        patterns=[*declared.get("patterns", []), *extra.get("patterns", [])],
    )
    _cache[key] = (now, rules)
    return rules
