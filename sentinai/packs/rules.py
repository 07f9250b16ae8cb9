"""What the API needs from a tenant's domain pack before anything is stored: its PII rules."""

from __future__ import annotations

from sentinai.kernel.cache import TTLCache
from sentinai.models import DomainPack, Tenant
from sentinai.packs import pii

CACHE_SECONDS = 30.0
_rules: TTLCache[pii.Rules] = TTLCache(ttl=CACHE_SECONDS)


def pii_rules_for(tenant: Tenant) -> pii.Rules:
    """PII fields and national-id patterns of the pack version the tenant runs (pinned in
    overrides["pack_version"], as the agents honour it, or else the latest loaded), plus the tenant's
    overrides (overrides["pii"] = {"fields": [...], "patterns": [...]})."""
    pinned = (tenant.overrides or {}).get("pack_version")
    return _rules.get_or_load((tenant.id, tenant.domain_pack, pinned), lambda: _load_rules(tenant, pinned))


def _load_rules(tenant: Tenant, pinned) -> pii.Rules:
    versions = DomainPack.objects.filter(name=tenant.domain_pack)
    versions = versions.filter(version=int(pinned)) if pinned else versions.order_by("-version")
    definition = versions.values_list("definition", flat=True).first() or {}
    declared = definition.get("pii") or {}
    extra = (tenant.overrides or {}).get("pii") or {}
    return pii.Rules.of(
        fields=[*declared.get("fields", []), *extra.get("fields", [])],
        patterns=[*declared.get("patterns", []), *extra.get("patterns", [])],
    )


def forget() -> None:
    _rules.forget()
