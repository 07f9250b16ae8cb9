from django.core.management.base import BaseCommand, CommandError

from sentinai.models import DEFAULT_SCOPES, Scope, Tenant
from sentinai.tenancy.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a tenant. The key is printed once, alone on the last line; only its hash is stored."

    def add_arguments(self, parser):
        parser.add_argument("tenant_id")
        parser.add_argument(
            "--name",
            default="",
            help="the actor recorded on every human action taken with the key, e.g. ops-desk:approver-1 "
            "(default: the tenant id)",
        )
        parser.add_argument(
            "--scopes",
            default=None,
            help=f"comma-separated, of {', '.join(Scope.values)} (default: {','.join(DEFAULT_SCOPES)})",
        )
        parser.add_argument("--operator", action="store_true", help="adds operate and read (cross-tenant reads)")

    def handle(self, *args, **options):
        tenant = Tenant.objects.filter(pk=options["tenant_id"]).first()
        if tenant is None:
            raise CommandError(f"unknown tenant {options['tenant_id']!r}; create it with create_tenant first")
        if options["scopes"] is None:
            scopes = () if options["operator"] else DEFAULT_SCOPES
        else:
            scopes = [s.strip() for s in options["scopes"].split(",") if s.strip()]
        try:
            api_key, key = api_key_create(
                tenant=tenant, name=options["name"], scopes=scopes, is_operator=options["operator"]
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        kind = "operator key" if api_key.is_operator else "key"
        self.stdout.write(
            f"created {kind} {api_key.prefix}… {api_key.name!r} ({','.join(api_key.scopes)}) for tenant {tenant.id}; "
            "store it now, it is not shown again:"
        )
        self.stdout.write(key)
