from django.core.management.base import BaseCommand, CommandError

from sentinai.models import Tenant
from sentinai.packs import domain


class Command(BaseCommand):
    help = "Validate and load a domain pack version from a YAML file, then bind the tenants that use the pack to it."

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--no-bind", action="store_true", help="load only; tenants keep their current version")

    def handle(self, *args, **options):
        try:
            pack = domain.load_file(options["path"])
            row, created = domain.install(pack, options["path"])
        except domain.PackError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"pack {pack.name} v{pack.version} {'loaded' if created else 'already loaded'} ({row.checksum[:12]})"
        )
        if options["no_bind"]:
            return
        for tenant in Tenant.objects.filter(domain_pack=pack.name):
            counts = domain.bind(tenant)
            self.stdout.write(f"tenant {tenant.id}: {counts['playbooks']} playbooks, {counts['tools']} tools added")
