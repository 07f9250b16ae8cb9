"""The one base task of the pipeline, the agent runner, and the scheduler's periodic task."""

from __future__ import annotations

import logging
import time

from celery import Task
from celery.exceptions import Reject
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connections

from config.celery import app
from sentinai import consumer, scheduler
from sentinai.registry import get_agent

logger = logging.getLogger(__name__)


class AgentTask(Task):
    """Base of every pipeline task: acknowledged only after the work committed (a worker that dies
    holding a batch hands it back), results ignored, bounded run time (below RabbitMQ's consumer
    timeout)."""

    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    typing = False
    max_retries = 0


def run_agent(task: Task, agent_name: str, body) -> dict:
    """Hand one message to the consumer framework."""
    agent = get_agent(agent_name)
    budget = settings.SENTINAI["DB_OUTAGE_BUDGET_SECONDS"]
    started = time.monotonic()
    delay = 0.5
    while True:
        try:
            report = consumer.handle_batch(agent, body)
            break
        except consumer.PoisonMessage as exc:
            _dead_letter_poison(task, agent_name, body, exc)
            raise Reject(str(exc), requeue=False) from exc
        except (OperationalError, InterfaceError) as exc:
            # The database is unreachable (or the batch deadlocked three times): keep the message
            # while waiting for it, then hand it back to the queue.
            for conn in connections.all(initialized_only=True):
                conn.close()
            if time.monotonic() - started + delay > budget:
                logger.error("%s: database unavailable for %.0fs, requeueing the batch: %s", agent_name, budget, exc)
                raise Reject(str(exc), requeue=True) from exc
            logger.warning("%s: database error, retrying in %.1fs: %s", agent_name, delay, exc)
            time.sleep(delay)
            delay = min(delay * 2, 15.0)
            close_old_connections()
    logger.debug(
        "%s batch: received=%d applied=%d duplicates=%d parked=%d retried=%d dead=%d emitted=%d",
        agent_name,
        report.received,
        report.applied,
        report.duplicates,
        report.parked,
        report.retried,
        report.dead_lettered,
        report.emitted,
    )
    return {
        "applied": report.applied,
        "duplicates": report.duplicates,
        "parked": report.parked,
        "retried": report.retried,
        "dead_lettered": report.dead_lettered,
    }


def _dead_letter_poison(task: Task, agent_name: str, body, exc: Exception) -> None:
    """On RabbitMQ the rejected message reaches the DLQ and its consumer records it. The in-process
    broker has no dead-lettering, so record it here."""
    if task.app.connection_for_write().transport.driver_type == "amqp":
        return
    from sentinai.deadletters import record_broker_dead_letter

    record_broker_dead_letter(
        message_id=task.request.id,
        queue=agent_name,
        body=body,
        headers={"x-first-death-reason": "rejected"},
        error=str(exc),
    )


@app.task(base=AgentTask, name="sentinai.scheduler.tick")
def tick() -> dict:
    """Relay the outbox, re-offer due retries and stale parked events (all tenants)."""
    return scheduler.tick_all_tenants()
