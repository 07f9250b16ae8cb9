"""The dedicated consumer of the RabbitMQ dead-letter queue.

Never point a Celery worker at `dead_letter`: a dead-lettered message is still a complete task
message and a worker would simply run it again. This consumer only records each message as a
dead-letter row (idempotent per message id), then acks it.
"""

import logging
import signal

from django.core.management.base import BaseCommand
from django.db import connections
from kombu import Consumer

from config import routing
from config.celery import app as celery_app
from sentinai.kernel import dependencies
from sentinai.ops.deadletters import record_broker_dead_letter

logger = logging.getLogger("sentinai.ops.deadletters")
# The broker drops a connection that misses two heartbeats: a half-open connection (the broker's host
# died) is noticed in about this long.
HEARTBEAT_SECONDS = 10


# Beat's periodic tasks carry an expiry; one that waited past it (a busy or restarting scheduler worker)
# is dead-lettered by the broker with reason "expired". It is a sweep the next tick does in full: not
# a dead letter for operators.
PERIODIC_TASKS = ("sentinai.scheduler.", "agents.sla.scan")


def _expired_periodic(headers: dict) -> bool:
    deaths = headers.get("x-death") or []
    reason = headers.get("x-first-death-reason") or (
        deaths[0].get("reason") if deaths and isinstance(deaths[0], dict) else None
    )
    task = str(headers.get("task") or "")
    return reason == "expired" and (bool(headers.get("celery_beat_task")) or task.startswith(PERIODIC_TASKS))


def handle_message(message) -> None:
    headers = dict(message.headers or {})
    if _expired_periodic(headers):
        message.ack()
        logger.debug("dropped an expired periodic task %s", headers.get("task"))
        return
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
    # A database error propagates before the ack: the message stays in the queue for the next attempt.
    record_broker_dead_letter(message_id=message_id, queue=agent, body=message.body, headers=headers)
    dependencies.up("database")
    message.ack()
    logger.warning("recorded dead-lettered message %s from queue %s", message_id, queue)


class Command(BaseCommand):
    help = (
        "Record messages that reach the RabbitMQ dead-letter queue (run exactly one or more of these, never a worker)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="drain what is queued now, then exit")

    def handle(self, *args, **options):
        """Consume until SIGTERM/SIGINT. A lost broker or database never ends the process: it drops
        the broker connection (the unacknowledged message goes back to the queue), waits with bounded
        backoff and starts again, with one log line per outage and one per recovery."""
        stop = {"now": False}

        def request_stop(signum, frame):
            stop["now"] = True

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        backoff = dependencies.Backoff()
        self.announced = False
        while not stop["now"]:
            try:
                finished = self._consume(stop, once=options["once"], backoff=backoff)
                if finished:
                    return
            except dependencies.database_errors() as exc:
                for conn in connections.all(initialized_only=True):
                    conn.close()
                dependencies.down("database", exc, consequence="dead letters wait in their queue")
            except dependencies.broker_errors() as exc:
                dependencies.down("broker", exc, consequence="the dead-letter consumer reconnects with backoff")
            backoff.sleep(lambda: stop["now"])

    def _consume(self, stop: dict, *, once: bool, backoff: dependencies.Backoff) -> bool:
        """One broker connection's worth of consuming; True when asked to stop or drained (--once)."""
        conn = celery_app.connection_for_write(heartbeat=HEARTBEAT_SECONDS)
        try:
            conn.ensure_connection(max_retries=1)
            routing.declare_topology(conn)
            dependencies.up("broker")
            queue = routing.dead_letter_queue()
            # on_message gets the raw message: an undecodable body must be recorded, not decoded here.
            with Consumer(conn, queues=[queue], on_message=handle_message, prefetch_count=50) as consumer:
                consumer.qos(prefetch_count=50)
                if not self.announced:
                    self.stdout.write(f"consuming {queue.name}")
                    self.stdout.flush()
                    self.announced = True
                idle = 0
                while not stop["now"]:
                    try:
                        conn.drain_events(timeout=1)
                        idle = 0
                        backoff.reset()
                    except TimeoutError:
                        conn.heartbeat_check()
                        backoff.reset()
                        idle += 1
                        if once and idle >= 2:
                            return True
            return True
        finally:
            try:
                conn.release()
            except Exception as exc:  # a dead connection may fail to close in any way; it is dropped anyway
                logger.debug("closing the dead-letter consumer's connection: %s", exc)
