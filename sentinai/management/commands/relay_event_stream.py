import faulthandler
import signal

from django.core.management.base import BaseCommand, CommandError

from sentinai.eventstore import stream
from sentinai.kernel import kafka


class Command(BaseCommand):
    help = (
        "Publish recorded events to the Kafka event stream (a topic per tenant, keyed by exception id). "
        "Run as many as you like: they share the shards."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="one round over every shard, then exit")
        parser.add_argument("--idle", type=float, default=0.2, help="seconds to wait when nothing is owed")

    def handle(self, *args, **options):
        if not kafka.stream_enabled():
            raise CommandError("the event stream is off: set KAFKA_BOOTSTRAP_SERVERS (and SENTINAI_KAFKA_STREAM)")
        if options["once"]:
            sent = stream.relay_round(stream.new_producer(), stream.Topics())
            self.stdout.write(f"published {sent} events")
            return
        # `kill -USR1 <pid>` prints every thread's stack: what a relay that seems stuck is waiting on.
        faulthandler.register(signal.SIGUSR1)
        stopping = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stopping.append(True))
        self.stdout.write("relaying the event stream", ending="\n")
        self.stdout.flush()
        stream.run_relay(idle_seconds=options["idle"], should_stop=lambda: bool(stopping))
