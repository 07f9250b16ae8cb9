"""Consumer-side coalescing: a worker that receives a small batch takes the messages waiting behind it
on the same queue and processes them together.

Batches are the unit of transport, but their size is set by whoever appended: a client posting one
exception at a time, or a hop that received a small batch, produces one-event messages, and every hop
would then pay a transaction, a publish and a message for each event. The fixed cost of a batch is
far above the cost of an event, so when the delivered message is small the task fetches more waiting
messages (basic_get on a channel of its own, unacknowledged), up to BATCH_SIZE events, merges them
per tenant, and acknowledges them only after their transactions committed. A worker that dies holding
them returns them to the queue, like the delivered message itself.

A fetch costs the broker a basic.get, and an empty one does nothing. So a fetch stops when the broker
says the queue is empty (basic.get-ok carries the count of messages left), and a queue found empty is
not asked again by this process for SENTINAI_COALESCE_IDLE_SECONDS: messages arriving meanwhile are
delivered as usual, one task each. While fetches keep finding messages, they go on. (Measured at half
load, this left RabbitMQ's CPU per hop where it was: docs/performance.md, "No savepoint per batch".)
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from django.conf import settings

from config import routing
from config.celery import app as celery_app

logger = logging.getLogger(__name__)

_local = threading.local()
# queue name -> monotonic time before which this process does not fetch from it (found empty).
_idle_until: dict[str, float] = {}


@dataclass
class Fetched:
    message: object  # kombu.Message
    body: object  # the batch body (the task's first argument), or None when undecodable
    error: str = ""

    def ack(self) -> None:
        self.message.ack()

    def requeue(self) -> None:
        self.message.reject(requeue=True)

    def reject(self) -> None:
        self.message.reject(requeue=False)


def _queue(name: str):
    channel = getattr(_local, "channel", None)
    if channel is None:
        # No heartbeats: this connection is used in short bursts from inside a running task.
        conn = celery_app.connection_for_read(heartbeat=0)
        conn.ensure_connection(max_retries=1)
        _local.conn = conn
        _local.channel = channel = conn.channel()
        _local.bound = {}
    # Bound once per channel: building the routing table's queues at every small batch cost ~0.8 ms.
    bound = _local.bound.get(name)
    if bound is None:
        for queue in routing.work_queues():
            if queue.name == name:
                bound = _local.bound[name] = queue(channel)
                break
        else:
            raise LookupError(name)
    return bound


def _drop_connection() -> None:
    conn = getattr(_local, "conn", None)
    _local.conn = _local.channel = None
    _local.bound = {}
    if conn is not None:
        try:
            conn.release()
        except Exception as exc:  # already broken; nothing left to release
            logger.debug("closing coalescing connection: %s", exc)


def fetch(queue: str, task_name: str, *, max_events: int, max_messages: int = 100) -> list[Fetched]:
    """Take waiting messages for `task_name` from `queue`, about `max_events` events' worth. Never
    raises: coalescing is an optimisation, and on any broker trouble the task runs what it has."""
    taken: list[Fetched] = []
    events = 0
    if _idle_until.get(queue, 0.0) > time.monotonic():
        return taken
    try:
        bound = _queue(queue)
        while events < max_events and len(taken) < max_messages:
            message = bound.get(no_ack=False, accept=["application/json"])
            if message is None:
                if not taken:
                    _idle_until[queue] = time.monotonic() + settings.SENTINAI["COALESCE_IDLE_SECONDS"]
                break
            if (message.headers or {}).get("task") != task_name:
                message.reject(requeue=True)  # not a batch: leave it to Celery
                break
            try:
                args = message.decode()[0]
                body = args[0]
                events += len(body.get("events") or ())
                taken.append(Fetched(message, body))
            except Exception as exc:  # undecodable: the caller dead-letters it
                taken.append(Fetched(message, None, f"undecodable message: {type(exc).__name__}: {exc}"))
            if (message.delivery_info or {}).get("message_count") == 0:
                break  # that was the last one waiting: no empty basic.get to find it out
    except Exception as exc:
        logger.warning("coalescing on %s stopped: %s", queue, exc)
        for item in taken:
            try:
                item.requeue()
            except Exception:  # the connection is gone; the broker requeues them itself
                pass
        _drop_connection()
        return []
    return taken
