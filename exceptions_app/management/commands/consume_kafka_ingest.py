import faulthandler
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from exceptions_app import kafka_ingest


class Command(BaseCommand):
    help = (
        "Take in exceptions that source systems publish to the Kafka topics of SENTINAI_KAFKA_INGEST_TOPICS "
        "(topic -> tenant), as POST /api/exceptions/{tenant} would. Run as many as the topics have "
        "partitions: they share them through the consumer group SENTINAI_KAFKA_INGEST_GROUP."
    )

    def handle(self, *args, **options):
        if not settings.KAFKA_BOOTSTRAP_SERVERS:
            raise CommandError("KAFKA_BOOTSTRAP_SERVERS is not set: no Kafka cluster is configured")
        try:
            topics = kafka_ingest.ingest_topics()
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        # `kill -USR1 <pid>` prints every thread's stack: what a consumer that seems stuck waits on.
        faulthandler.register(signal.SIGUSR1)
        stopping = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stopping.append(True))
        consumer = kafka_ingest.IngestConsumer(topics, settings.SENTINAI["KAFKA_INGEST_GROUP"])
        self.stdout.write(f"consuming {', '.join(sorted(topics))} as {settings.SENTINAI['KAFKA_INGEST_GROUP']}")
        self.stdout.flush()
        consumer.run(should_stop=lambda: bool(stopping))
        self.stdout.write("stopped")
