"""Write services of the platform core: tenants and API keys."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from sentinai.models import DEFAULT_SCOPES, Scope, Tenant, TenantAPIKey


def tenant_create_or_update(
    *,
    tenant_id: str,
    domain_pack: str,
    name: str | None = None,
    rate_per_second: float | None = None,
    burst: int | None = None,
    max_in_flight: int | None = None,
    overrides: dict | None = None,
) -> tuple[Tenant, bool]:
    """Create the tenant, or update the given settings of an existing one, and bind it to its domain
    pack (loading the shipped pack by name if needed). Idempotent. Raises domain.PackError for a pack
    that is neither loaded nor shipped."""
    from sentinai.packs import domain
    from sentinai.tenancy import tenants

    Tenant(id=tenant_id, name=name or tenant_id, domain_pack=domain_pack).clean_fields(exclude=["created_at"])
    domain.ensure_loaded(domain_pack)
    with transaction.atomic():
        tenant, created = Tenant.objects.select_for_update().get_or_create(
            id=tenant_id, defaults={"name": name or tenant_id, "domain_pack": domain_pack}
        )
        changes = {
            "domain_pack": domain_pack,
            "name": name,
            "rate_per_second": rate_per_second,
            "burst": burst,
            "max_in_flight": max_in_flight,
            "overrides": overrides,
        }
        changed = False
        for field_name, value in changes.items():
            if value is not None and getattr(tenant, field_name) != value:
                setattr(tenant, field_name, value)
                changed = True
        if changed:
            tenant.save()
    domain.bind(tenant)
    tenants.forget(tenant.id)
    return tenant, created


def api_key_create(
    *, tenant: Tenant, name: str = "", scopes: Iterable[str] = DEFAULT_SCOPES, is_operator: bool = False
) -> tuple[TenantAPIKey, str]:
    """Create an API key named `name` (the actor its human actions are recorded under) with `scopes`;
    `is_operator` adds operate and read. The plaintext key is returned once and only its hash is stored.
    Raises ValueError for an unknown scope, no scope at all, or a name longer than 50 characters."""
    wanted = set(scopes) | ({Scope.OPERATE.value, Scope.READ.value} if is_operator else set())
    unknown = sorted(wanted - set(Scope.values))
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; scopes are {', '.join(Scope.values)}")
    if not wanted:
        raise ValueError("a key needs at least one scope")
    name = (name or f"{tenant.id}{':operator' if Scope.OPERATE in wanted else ''}").strip()
    if not name or len(name) > 50 or not name.isprintable():
        raise ValueError("a key name is 1-50 printable characters")
    ordered = [s for s in Scope.values if s in wanted]
    return TenantAPIKey.objects.create_key(tenant=tenant, name=name, scopes=ordered)
