"""Demo tenants and keys for the embedded default. Idempotent: the keys are created once and kept in
var/demo-keys.json (readable by the owner only) so that `make run` can show them on every start."""

import json
import os

from django.conf import settings
from django.core.management.base import BaseCommand

from sentinai.models import Tenant, TenantAPIKey
from sentinai.tenancy.services import api_key_create, tenant_create_or_update

DEMO_TENANTS = (
    ("acme-finance", "Acme Securities (demo)", "finance"),
    ("medi-claims", "Medi Claims Inc. (demo)", "healthcare"),
)
OPERATOR_TENANT = "acme-finance"


def keys_file():
    return settings.VAR_DIR / "demo-keys.json"


class Command(BaseCommand):
    help = "Create the demo tenants and their API keys (idempotent)."

    def handle(self, *args, **options):
        for tenant_id, name, pack in DEMO_TENANTS:
            tenant_create_or_update(tenant_id=tenant_id, domain_pack=pack, name=name)
        path = keys_file()
        keys = {}
        if path.exists():
            keys = json.loads(path.read_text())
        wanted = [(t, False) for t, _, _ in DEMO_TENANTS] + [(OPERATOR_TENANT, True)]
        changed = False
        for tenant_id, operator in wanted:
            label = f"{tenant_id}{':operator' if operator else ''}"
            key = keys.get(label)
            if key and TenantAPIKey.objects.is_valid(key):
                continue

            _, keys[label] = api_key_create(
                tenant=Tenant.objects.get(pk=tenant_id),
                name=f"demo {label}",
                scopes=("read",) if operator else ("ingest", "read", "approve"),
                is_operator=operator,
            )
            changed = True
        if changed:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(keys, indent=2))
            os.chmod(path, 0o600)
        for label, key in keys.items():
            self.stdout.write(f"{label:28} {key}")
