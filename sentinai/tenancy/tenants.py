"""Tenant lookups for hot paths: a short-lived per-process cache of tenant rows."""

from __future__ import annotations

import time

from sentinai.models import Tenant

TTL_SECONDS = 5.0
_cache: dict[str, tuple[float, Tenant | None]] = {}


def get(tenant_id: str) -> Tenant | None:
    """The tenant, read at most every TTL_SECONDS per process (limits and packs change rarely)."""
    now = time.monotonic()
    hit = _cache.get(tenant_id)
    if hit is not None and now - hit[0] < TTL_SECONDS:
        return hit[1]
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    _cache[tenant_id] = (now, tenant)
    return tenant


def forget(tenant_id: str | None = None) -> None:
    if tenant_id is None:
        _cache.clear()
    else:
        _cache.pop(tenant_id, None)
