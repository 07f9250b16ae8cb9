"""Lanes as operators see them: how deep each one is, and moving what a pre-lanes deployment left in
its single agent queues into the lanes.

Before lanes every agent had one queue named after it (`triage`). After an upgrade no worker consumes
those any more; what they still hold is also owed through the outbox, so the relay would send it again
to the tenant's lane once that lane is empty (after SENTINAI_OUTBOX_REDELIVER_SECONDS). `move_legacy`
does it at once and empties the old queues: each message is republished, unchanged, to its tenant's
lane with a publisher confirm, and only then acknowledged (a crash in between leaves a copy in both,
which the consumers apply once).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from kombu import Producer

from config import routing
from config.celery import app as celery_app

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Lane:
    queue: str
    agent: str
    ready: int
    consumers: int


def lane_depths_all_tenants() -> list[Lane]:
    """Every work queue the broker has, with its ready messages and consumers, deepest first (a lane
    no worker has declared yet is left out)."""
    lanes = []
    with celery_app.connection_for_write() as conn:
        channel = conn.channel()
        for queue in routing.work_queues():
            try:
                ok = channel.queue_declare(queue=queue.name, passive=True)
            except conn.channel_errors:  # NOT_FOUND closes the channel
                channel = conn.channel()
                continue
            lanes.append(Lane(queue.name, routing.agent_of(queue.name), ok.message_count, ok.consumer_count))
        channel.close()
    return sorted(lanes, key=lambda lane: (-lane.ready, lane.queue))


def _legacy_queue_exists(conn, name: str) -> bool:
    channel = conn.channel()
    try:
        channel.queue_declare(queue=name, passive=True)
        return True
    except conn.channel_errors:  # NOT_FOUND closes the channel
        return False
    finally:
        try:
            channel.close()
        except Exception:  # already closed by the broker
            pass


def move_legacy_all_tenants() -> dict[str, int]:
    """Move every message of the pre-lanes agent queues to its tenant's lane. Returns moved per queue."""
    moved: dict[str, int] = {}
    with celery_app.connection_for_write() as conn:
        routing.declare_topology(conn)
        for agent in routing.LANED_AGENTS:
            if not _legacy_queue_exists(conn, agent):
                continue
            channel = conn.channel()
            producer = Producer(channel, exchange=routing.EXCHANGE)
            moved[agent] = 0
            while (message := channel.basic_get(agent, no_ack=False)) is not None:
                try:
                    body = json.loads(message.body)
                    lane = routing.lane_queue(agent, body[0][0]["tenant_id"])
                except (ValueError, KeyError, IndexError, TypeError) as exc:
                    # Not a batch: the old queue's dead-letter exchange takes it to `dead_letter`.
                    logger.warning("%s: dead-lettering a message that names no tenant: %s", agent, exc)
                    channel.basic_reject(message.delivery_tag, requeue=False)
                    continue
                producer.publish(
                    message.body,
                    routing_key=lane,
                    headers=message.headers,
                    content_type=message.content_type,
                    content_encoding=message.content_encoding,
                    delivery_mode=2,
                    correlation_id=message.properties.get("correlation_id"),
                    retry=False,
                )
                channel.basic_ack(message.delivery_tag)
                moved[agent] += 1
            channel.close()
    return moved
