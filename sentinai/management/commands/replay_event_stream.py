from datetime import datetime

from django.core.management.base import BaseCommand, CommandError

from sentinai.eventstore import stream
from sentinai.kernel import kafka
from sentinai.models import Tenant


class Command(BaseCommand):
    help = "Publish a tenant's recorded events to its Kafka topic again (a new consumer's backfill)."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--since", help="ISO 8601 time: only events recorded from then on")

    def handle(self, *args, **options):
        if not settings_ok():
            raise CommandError("no Kafka cluster is configured: set KAFKA_BOOTSTRAP_SERVERS")
        tenant_id = options["tenant"]
        if not Tenant.objects.filter(pk=tenant_id).exists():
            raise CommandError(f"unknown tenant {tenant_id!r}")
        since = None
        if options["since"]:
            try:
                since = datetime.fromisoformat(options["since"])
            except ValueError as exc:
                raise CommandError(f"--since: not an ISO 8601 time: {options['since']!r}") from exc
        sent = stream.replay(tenant_id, since=since)
        self.stdout.write(f"replayed {sent} events of {tenant_id} to {kafka.topic_for(tenant_id)}")


def settings_ok() -> bool:
    from django.conf import settings

    return bool(settings.KAFKA_BOOTSTRAP_SERVERS)
