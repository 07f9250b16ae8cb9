"""The dedicated consumer of the RabbitMQ dead-letter queue.

Never point a Celery worker at `dead_letter`: a dead-lettered message is still a complete task
message and a worker would simply run it again. This consumer only records each message as a
dead-letter row (idempotent per message id), then acks it.
"""

import logging
import signal

from django.core.management.base import BaseCommand
from kombu import Consumer

from config import routing
from config.celery import app as celery_app
from sentinai.ops.deadletters import record_broker_dead_letter

logger = logging.getLogger("sentinai.ops.deadletters")


def handle_message(message) -> None:
    headers = dict(message.headers or {})
    message_id = headers.get("id") or (message.properties or {}).get("correlation_id")
    deaths = headers.get("x-death") or []
    queue = (
        deaths[0].get("queue")
        if deaths and isinstance(deaths[0], dict)
        else (message.delivery_info or {}).get("routing_key", "")
    )
    # A lane (`triage.2`, `triage.tenant-acme`) is recorded as its agent: the dead letter's consumer, and a
    # metrics label that must not carry a tenant's name. x-death in the headers keeps the lane.
    agent = routing.agent_of(queue) if queue else ""
    record_broker_dead_letter(message_id=message_id, queue=agent, body=message.body, headers=headers)
    message.ack()
    logger.warning("recorded dead-lettered message %s from queue %s", message_id, queue)


class Command(BaseCommand):
    help = (
        "Record messages that reach the RabbitMQ dead-letter queue (run exactly one or more of these, never a worker)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="drain what is queued now, then exit")

    def handle(self, *args, **options):
        stop = {"now": False}

        def request_stop(signum, frame):
            stop["now"] = True

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=None)
            routing.declare_topology(conn)
            queue = routing.dead_letter_queue()
            # on_message gets the raw message: an undecodable body must be recorded, not decoded here.
            with Consumer(conn, queues=[queue], on_message=handle_message, prefetch_count=50) as consumer:
                consumer.qos(prefetch_count=50)
                self.stdout.write(f"consuming {queue.name}")
                self.stdout.flush()
                idle = 0
                while not stop["now"]:
                    try:
                        conn.drain_events(timeout=1)
                        idle = 0
                    except TimeoutError:
                        idle += 1
                        if options["once"] and idle >= 2:
                            break
