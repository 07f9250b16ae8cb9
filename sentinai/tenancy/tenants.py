"""Tenant lookups for hot paths: a short-lived per-process cache of tenant rows."""

from __future__ import annotations

from sentinai.kernel.cache import TTLCache
from sentinai.models import Tenant

TTL_SECONDS = 5.0
_tenants: TTLCache[Tenant | None] = TTLCache(ttl=TTL_SECONDS)


def get(tenant_id: str) -> Tenant | None:
    """The tenant, read at most every TTL_SECONDS per process (limits and packs change rarely)."""
    return _tenants.get_or_load(tenant_id, lambda: Tenant.objects.filter(pk=tenant_id).first())


def forget(tenant_id: str | None = None) -> None:
    if tenant_id is None:
        _tenants.forget()
    else:
        _tenants.forget(tenant_id)
