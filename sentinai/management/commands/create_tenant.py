from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from sentinai.packs.domain import PackError
from sentinai.tenancy.services import tenant_create_or_update


class Command(BaseCommand):
    help = "Create a tenant bound to a domain pack, or update its settings (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("tenant_id")
        parser.add_argument("--domain-pack", required=True)
        parser.add_argument("--name")
        parser.add_argument("--rate", type=float, help="admitted requests per second (token bucket rate)")
        parser.add_argument("--burst", type=int, help="token bucket size")
        parser.add_argument("--max-in-flight", type=int, help="cap on accepted, not yet terminal exceptions")

    def handle(self, *args, **options):
        try:
            tenant, created = tenant_create_or_update(
                tenant_id=options["tenant_id"],
                domain_pack=options["domain_pack"],
                name=options["name"],
                rate_per_second=options["rate"],
                burst=options["burst"],
                max_in_flight=options["max_in_flight"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
        except (LookupError, PackError) as exc:
            raise CommandError(str(exc)) from exc
        verb = "created" if created else "exists"
        self.stdout.write(f"tenant {tenant.id} {verb} (domain pack {tenant.domain_pack})")
