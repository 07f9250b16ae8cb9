"""The one table of exchanges, queues and task routes.

The API (publishing through the outbox) and every worker import these definitions, so producers and
consumers always declare identical queue arguments (RabbitMQ refuses a redeclaration that differs).

Every agent queue is a RabbitMQ quorum queue on the topic exchange `sentinai`, with a delivery limit
and the dead-letter exchange `sentinai.dlx`: a message that keeps coming back (its worker crashed or
was killed holding it, or it was rejected) is moved to the `dead_letter` queue, which no Celery worker
consumes; `manage.py consume_dead_letters` records what arrives there.
"""

from __future__ import annotations

import fnmatch

from django.conf import settings
from kombu import Exchange, Queue

AGENTS: tuple[str, ...] = (
    "intake",
    "triage",
    "policy",
    "resolution",
    "playbook",
    "tool",
    "feedback",
    "sla",
)
SCHEDULER_QUEUE = "scheduler"
DEAD_LETTER_QUEUE = "dead_letter"
# Queues whose work crosses tenants (the SLA monitor's scans, the scheduler's relay, re-drives and
# recounts): their workers connect as the platform database role. Every other agent worker connects
# as the tenant-bound application role, for which the all-tenants scope shows nothing.
PLATFORM_QUEUES: tuple[str, ...] = ("sla", SCHEDULER_QUEUE)

EXCHANGE = Exchange("sentinai", type="topic", durable=True)
DEAD_LETTER_EXCHANGE = Exchange("sentinai.dlx", type="topic", durable=True)


def _work_queue_arguments() -> dict:
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": settings.BROKER_DELIVERY_LIMIT,
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE.name,
        # Quorum queues dead-letter at-least-once only together with reject-publish overflow.
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def work_queues() -> list[Queue]:
    """Queues that Celery workers consume: one per agent plus the scheduler's."""
    args = _work_queue_arguments()
    return [
        Queue(name, EXCHANGE, routing_key=name, durable=True, queue_arguments=args)
        for name in (*AGENTS, SCHEDULER_QUEUE)
    ]


def dead_letter_queue() -> Queue:
    """The DLQ: bound to the dead-letter exchange for every routing key. Never a Celery task queue."""
    return Queue(
        DEAD_LETTER_QUEUE,
        DEAD_LETTER_EXCHANGE,
        routing_key="#",
        durable=True,
        queue_arguments={"x-queue-type": "quorum"},
    )


# Task name patterns -> queue. Agent tasks are named agents.<agent>.<verb>; platform tasks that the
# scheduler runs are named sentinai.scheduler.<verb>.
ROUTES: dict[str, str] = {
    **{f"agents.{name}.*": name for name in AGENTS},
    "sentinai.scheduler.*": SCHEDULER_QUEUE,
}


def queue_for_task(task_name: str) -> str | None:
    for pattern, queue in ROUTES.items():
        if fnmatch.fnmatchcase(task_name, pattern):
            return queue
    return None


def route_task(name, args, kwargs, options, task=None, **kw):
    """Celery router: every task must match ROUTES (tests enforce it)."""
    queue = queue_for_task(name)
    if queue is None:
        return None
    return {"queue": queue, "routing_key": queue, "exchange": EXCHANGE.name}


def declare_topology(connection) -> None:
    """Declare exchanges, work queues and the DLQ with its binding. Idempotent.

    Only meaningful on AMQP brokers; the in-process broker has no dead-lettering.
    """
    if connection.transport.driver_type != "amqp":
        return
    channel = connection.default_channel
    for queue in (*work_queues(), dead_letter_queue()):
        queue(channel).declare()
