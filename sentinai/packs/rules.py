"""What the API needs from a tenant's domain pack before anything is stored: its PII rules."""

from __future__ import annotations

from sentinai.kernel.cache import TTLCache
from sentinai.models import DomainPack, Tenant
from sentinai.packs import pii

CACHE_SECONDS = 30.0
_rules: TTLCache[pii.Rules] = TTLCache(ttl=CACHE_SECONDS)


def pii_rules_for(tenant: Tenant) -> pii.Rules:
    """PII fields and national-id patterns of the latest loaded version of the tenant's pack, plus the
    tenant's overrides (overrides["pii"] = {"fields": [...], "patterns": [...]})."""
    return _rules.get_or_load((tenant.id, tenant.domain_pack), lambda: _load_rules(tenant))


def _load_rules(tenant: Tenant) -> pii.Rules:
    definition = (
        DomainPack.objects.filter(name=tenant.domain_pack)
        .order_by("-version")
        .values_list("definition", flat=True)
        .first()
        or {}
    )
    declared = definition.get("pii") or {}
    extra = (tenant.overrides or {}).get("pii") or {}
    return pii.Rules.of(
        fields=[*declared.get("fields", []), *extra.get("fields", [])],
        patterns=[*declared.get("patterns", []), *extra.get("patterns", [])],
    )
