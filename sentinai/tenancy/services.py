"""Write services of the platform core: tenants and API keys."""

from __future__ import annotations

from django.db import transaction

from sentinai.models import Tenant, TenantAPIKey


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


def api_key_create(*, tenant: Tenant, name: str = "", is_operator: bool = False) -> tuple[TenantAPIKey, str]:
    """Create an API key; the plaintext key is returned once and only its hash is stored."""
    return TenantAPIKey.objects.create_key(
        tenant=tenant, name=name or f"{tenant.id}{' operator' if is_operator else ''}", is_operator=is_operator
    )
