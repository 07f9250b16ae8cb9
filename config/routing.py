"""The one table of exchanges, queues and task routes.

The API (publishing through the outbox) and every worker import these definitions, so producers and
consumers always declare identical queue arguments (RabbitMQ refuses a redeclaration that differs).

Every agent queue is a RabbitMQ quorum queue on the topic exchange `sentinai`, with a delivery limit
and the dead-letter exchange `sentinai.dlx`: a message that keeps coming back (its worker crashed or
was killed holding it, or it was rejected) is moved to the `dead_letter` queue, which no Celery worker
consumes; `manage.py consume_dead_letters` records what arrives there.

Lanes (fair share across tenants). Each agent that consumes per-tenant batches has several queues,
its lanes: `triage.0` … `triage.<N-1>` (SENTINAI_LANES), a tenant's batches always going to the lane
its id hashes to (crc32, stable across processes), plus one dedicated lane `triage.tenant-<id>` for
each tenant named in SENTINAI_DEDICATED_LANES. A worker consuming several lanes has one consumer per
lane, and RabbitMQ applies the prefetch limit per consumer (global QoS is off for quorum queues), so
a lane with a deep backlog holds only its prefetch in the worker while every other lane's next
message is delivered as soon as it arrives: the worker takes from its lanes in turn. `-Q triage` (and
`-X triage`) name all of triage's lanes (`LaneQueues`); `-Q triage.tenant-acme` names one.
"""

from __future__ import annotations

import fnmatch
import zlib
from collections.abc import Iterable

from celery.app.amqp import AMQP, Queues
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
# Agents whose work arrives as batches of one tenant, spread over lanes. `sla`'s queue carries its
# periodic scan of all tenants, and the scheduler's its ticks: one queue each.
LANED_AGENTS: tuple[str, ...] = tuple(name for name in AGENTS if name != "sla")
SCHEDULER_QUEUE = "scheduler"
DEDICATED_PREFIX = "tenant-"
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


def dedicated_tenants() -> tuple[str, ...]:
    """Tenants with a lane of their own (SENTINAI_DEDICATED_LANES), in a stable order."""
    return tuple(sorted(set(settings.SENTINAI["DEDICATED_LANES"])))


def lane_of(tenant_id: str) -> str:
    """The lane a tenant's batches take: its dedicated lane, or the shared lane its id hashes to."""
    if tenant_id in settings.SENTINAI["DEDICATED_LANES"]:
        return f"{DEDICATED_PREFIX}{tenant_id}"
    return str(zlib.crc32(tenant_id.encode()) % settings.SENTINAI["LANES"])


def lane_queue(agent: str, tenant_id: str) -> str:
    """The queue that carries `tenant_id`'s batches for `agent`."""
    if agent not in LANED_AGENTS:
        return agent
    return f"{agent}.{lane_of(tenant_id)}"


def batch_size(agent: str) -> int:
    """Events per message to `agent` (the outbox's rows) and per batch its workers coalesce:
    AGENT_BATCH_SIZES[agent] if set, else BATCH_SIZE."""
    sizes = settings.SENTINAI["AGENT_BATCH_SIZES"]
    size = sizes[agent] if agent in sizes else settings.SENTINAI["BATCH_SIZE"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"the batch size of {agent!r} must be a positive integer, not {size!r}")
    return size


def agent_lanes(agent: str) -> list[str]:
    """Every queue of an agent: its shared lanes, then the dedicated ones (just `agent` if not laned)."""
    if agent not in LANED_AGENTS:
        return [agent]
    shared = [f"{agent}.{n}" for n in range(settings.SENTINAI["LANES"])]
    return [*shared, *(f"{agent}.{DEDICATED_PREFIX}{t}" for t in dedicated_tenants())]


def agent_of(queue: str) -> str:
    """The agent a queue (a lane or an unlaned queue) belongs to."""
    return queue.split(".", 1)[0]


def expand_queue_names(names: Iterable[str]) -> list[str]:
    """An agent's name stands for all its lanes (`-Q triage`); any other name stays as it is."""
    expanded: list[str] = []
    for name in names:
        for queue in agent_lanes(name) if name in LANED_AGENTS else [name]:
            if queue not in expanded:
                expanded.append(queue)
    return expanded


def work_queues() -> list[Queue]:
    """Queues that Celery workers consume: every agent's lanes, `sla` and the scheduler's."""
    args = _work_queue_arguments()
    return [
        Queue(name, EXCHANGE, routing_key=name, durable=True, queue_arguments=args)
        for name in expand_queue_names((*AGENTS, SCHEDULER_QUEUE))
    ]


class LaneQueues(Queues):
    """Celery's queue selection (`-Q`, `-X`) with an agent's name meaning all of its lanes."""

    def select(self, include):
        super().select(expand_queue_names(include) if include else include)

    def deselect(self, exclude):
        super().deselect(expand_queue_names(exclude) if exclude else exclude)


class LaneAMQP(AMQP):
    queues_cls = LaneQueues


def dead_letter_queue() -> Queue:
    """The DLQ: bound to the dead-letter exchange for every routing key. Never a Celery task queue."""
    return Queue(
        DEAD_LETTER_QUEUE,
        DEAD_LETTER_EXCHANGE,
        routing_key="#",
        durable=True,
        queue_arguments={"x-queue-type": "quorum"},
    )


# Task name patterns -> agent queue (or, for laned agents, the agent whose lanes carry it). Agent
# tasks are named agents.<agent>.<verb>; platform tasks that the scheduler runs are named
# sentinai.scheduler.<verb>.
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
    """Celery router: every task must match ROUTES (tests enforce it). A laned agent's batch goes to
    the lane of the tenant its body names."""
    queue = queue_for_task(name)
    if queue is None:
        return None
    if queue in LANED_AGENTS:
        body = args[0] if args else None
        tenant_id = body.get("tenant_id") if isinstance(body, dict) else None
        if not isinstance(tenant_id, str):
            raise ValueError(f"{name}: a batch names its tenant, which picks its lane")
        queue = lane_queue(queue, tenant_id)
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
