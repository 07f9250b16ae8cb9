from django.core.management.base import BaseCommand, CommandError

from sentinai.models import Tenant
from sentinai.tenancy.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a tenant. The key is printed once, alone on the last line; only its hash is stored."

    def add_arguments(self, parser):
        parser.add_argument("tenant_id")
        parser.add_argument("--operator", action="store_true", help="may read across tenants and replay dead letters")
        parser.add_argument("--name", default="")

    def handle(self, *args, **options):
        tenant = Tenant.objects.filter(pk=options["tenant_id"]).first()
        if tenant is None:
            raise CommandError(f"unknown tenant {options['tenant_id']!r}; create it with create_tenant first")
        api_key, key = api_key_create(tenant=tenant, name=options["name"], is_operator=options["operator"])
        kind = "operator key" if api_key.is_operator else "key"
        self.stdout.write(
            f"created {kind} {api_key.prefix}… for tenant {tenant.id}; store it now, it is not shown again:"
        )
        self.stdout.write(key)
