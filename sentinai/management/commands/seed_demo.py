"""Demo tenants, keys and an admin login for the embedded default. Idempotent: the keys and the login's
password are created once and kept in var/demo-keys.json and var/demo-operator.json (readable by the
owner only) so that `make run` can show them on every start. Never under production settings: the demo
login is refused there (SENTINAI_DEMO_LOGIN)."""

import json
import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from sentinai.models import Tenant, TenantAPIKey
from sentinai.tenancy.services import api_key_create, tenant_create_or_update

DEMO_TENANTS = (
    ("acme-finance", "Acme Securities (demo)", "finance"),
    ("medi-claims", "Medi Claims Inc. (demo)", "healthcare"),
)
OPERATOR_TENANT = "acme-finance"
DEMO_OPERATOR = "operator"


def keys_file():
    return settings.VAR_DIR / "demo-keys.json"


def operator_file():
    return settings.VAR_DIR / "demo-operator.json"


def demo_operator_login() -> dict | None:
    """The demo admin login {"username", "password"}: created on first use, kept in var/. None where
    demo logins are off (production settings)."""
    if not settings.SENTINAI.get("DEMO_LOGIN", False):
        return None
    path = operator_file()
    login = json.loads(path.read_text()) if path.exists() else None
    users = get_user_model()
    user = users.objects.filter(username=DEMO_OPERATOR).first()
    if login and user is not None and user.check_password(login["password"]):
        return login
    login = {"username": DEMO_OPERATOR, "password": secrets.token_urlsafe(12)}
    user = user or users(username=DEMO_OPERATOR, email="operator@example.invalid")
    user.is_staff = user.is_superuser = user.is_active = True
    user.set_password(login["password"])
    user.save()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(login))
    os.chmod(path, 0o600)
    return login


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
        login = demo_operator_login()
        if login:
            self.stdout.write(f"{'admin login':28} {login['username']} / {login['password']}")
