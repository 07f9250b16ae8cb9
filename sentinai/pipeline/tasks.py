"""The one base task of the pipeline, the agents' batch tasks, and the scheduler's periodic tasks."""

from __future__ import annotations

import logging
import time
from collections import defaultdict

from celery import Task
from celery.exceptions import Reject
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connections

from config import routing
from config.celery import app
from sentinai.eventstore.events import SUBSCRIPTIONS
from sentinai.kernel import dependencies, metrics
from sentinai.kernel.logs import log_context
from sentinai.pipeline import coalesce, consumer, scheduler
from sentinai.pipeline.registry import get_agent
from sentinai.tenancy import admission

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
    """Hand a message - and, when it is small, the messages waiting behind it - to the consumer
    framework. Fetched messages are acknowledged only after their batches committed."""
    with log_context(agent=agent_name):
        return _run_agent(task, agent_name, body)


def _batch_task(agent_name: str) -> Task:
    def handle_batch(self, body):
        return run_agent(self, agent_name, body)

    handle_batch.__doc__ = f"Apply a batch of events to the {agent_name} agent."
    return app.task(base=AgentTask, bind=True, name=f"agents.{agent_name}.handle_batch")(handle_batch)


# One `agents.<agent>.handle_batch` task per agent queue of the routing table that the catalogue
# subscribes to events; agents whose work starts elsewhere (the SLA scan) declare their own tasks.
BATCH_TASKS: dict[str, Task] = {name: _batch_task(name) for name in routing.AGENTS if SUBSCRIPTIONS.get(name)}


def _run_agent(task: Task, agent_name: str, body) -> dict:
    agent = get_agent(agent_name)
    try:
        incoming = consumer.decode(agent_name, body)
    except consumer.PoisonMessage as exc:
        _dead_letter_poison(task, agent_name, body, exc)
        raise Reject(str(exc), requeue=False) from exc

    batches = {incoming.tenant_id: incoming}
    fetched: dict[str, list[coalesce.Fetched]] = defaultdict(list)
    batch_size = routing.batch_size(agent_name)
    if settings.SENTINAI["COALESCE"] and len(incoming.events) < batch_size // 2:
        # Only from the lane this message came by: another lane's messages wait their turn.
        lane = (task.request.delivery_info or {}).get("routing_key")
        if lane not in routing.agent_lanes(agent_name):
            lane = routing.lane_queue(agent_name, incoming.tenant_id)
        for item in coalesce.fetch(lane, task.name, max_events=batch_size - len(incoming.events)):
            try:
                if item.body is None:
                    raise consumer.PoisonMessage(item.error)
                extra = consumer.decode(agent_name, item.body)
            except consumer.PoisonMessage as exc:
                _dead_letter_fetched(task, agent_name, item, exc)
                continue
            known = batches.get(extra.tenant_id)
            batches[extra.tenant_id] = consumer.merge(known, extra) if known else extra
            fetched[extra.tenant_id].append(item)

    totals: dict[str, int] = defaultdict(int)
    poisoned: Exception | None = None
    try:
        for tenant_id, batch in batches.items():
            try:
                with log_context(tenant_id=tenant_id):
                    report = _handle_with_database_patience(agent, batch)
            except consumer.PoisonMessage as exc:  # e.g. an unknown tenant: every message of it is poison
                for item in fetched.pop(tenant_id, []):
                    _dead_letter_fetched(task, agent_name, item, exc)
                if tenant_id == incoming.tenant_id:
                    poisoned = exc
                continue
            for name in ("received", "applied", "duplicates", "parked", "retried", "dead_lettered", "emitted"):
                totals[name] += getattr(report, name)
            _observe(agent_name, tenant_id, report)
    except BaseException:
        for items in fetched.values():
            for item in items:
                _quietly(item.requeue)
        raise
    for items in fetched.values():
        for item in items:
            _quietly(item.ack)
    if poisoned is not None:
        _dead_letter_poison(task, agent_name, body, poisoned)
        raise Reject(str(poisoned), requeue=False) from poisoned
    totals["messages"] = 1 + sum(len(items) for items in fetched.values())
    logger.debug("%s batch: %s", agent_name, dict(totals))
    return dict(totals)


def _observe(agent_name: str, tenant_id: str, report: consumer.Report) -> None:
    tenant = metrics.tenant_label(tenant_id)
    for event_type, count in report.applied_types.items():
        metrics.EVENTS.labels(agent_name, event_type, tenant).inc(count)
    metrics.BATCH_SECONDS.labels(agent_name).observe(report.seconds)
    if report.received:
        metrics.EVENT_SECONDS.labels(agent_name).observe(report.seconds / report.received)
    for counter, value in (
        (metrics.DUPLICATES, report.duplicates),
        (metrics.PARKED, report.parked),
        (metrics.FAILURES, report.retried + report.dead_lettered),
        (metrics.RETRIES, report.retried),
    ):
        if value:
            counter.labels(agent_name).inc(value)
    if report.dead_lettered:
        metrics.DEAD_LETTERS.labels(agent_name, "handler").inc(report.dead_lettered)
    for outcome, seconds in report.closed:
        metrics.END_TO_END_SECONDS.labels(outcome).observe(seconds)


def _handle_with_database_patience(agent, batch: consumer.IncomingBatch) -> consumer.Report:
    """Run the batch; while the database is unreachable (or the batch deadlocked three times) keep it
    and retry with backoff, then hand it back to the queue."""
    budget = settings.SENTINAI["DB_OUTAGE_BUDGET_SECONDS"]
    started = time.monotonic()
    delay = 0.5
    while True:
        try:
            begun = time.perf_counter()
            report = consumer.handle_incoming(agent, batch)
            report.seconds = time.perf_counter() - begun
            return report
        except (OperationalError, InterfaceError) as exc:
            for conn in connections.all(initialized_only=True):
                conn.close()
            if time.monotonic() - started + delay > budget:
                logger.error("%s: database unavailable for %.0fs, requeueing the batch: %s", agent.name, budget, exc)
                raise Reject(str(exc), requeue=True) from exc
            if dependencies.is_database_outage(exc):  # one line per outage, not per attempt
                dependencies.down("database", exc, consequence=f"{agent.name} keeps its batch and retries")
            else:
                logger.warning("%s: database error, retrying in %.1fs: %s", agent.name, delay, exc)
            time.sleep(delay)
            delay = min(delay * 2, 15.0)
            close_old_connections()


def _quietly(action) -> None:
    try:
        action()
    except Exception as exc:  # the channel is gone: the broker returns unacked messages by itself
        logger.warning("could not settle a coalesced message: %s", exc)


def _dead_letter_fetched(task: Task, agent_name: str, item: coalesce.Fetched, exc: Exception) -> None:
    _dead_letter_poison(
        task,
        agent_name,
        item.body if item.body is not None else item.message.body,
        exc,
        message_id=(item.message.headers or {}).get("id"),
    )
    _quietly(item.reject)


def _dead_letter_poison(task: Task, agent_name: str, body, exc: Exception, message_id: str | None = None) -> None:
    """On RabbitMQ the rejected message reaches the DLQ and its consumer records it. The in-process
    broker has no dead-lettering, so record it here."""
    if task.app.connection_for_write().transport.driver_type == "amqp":
        return
    from sentinai.ops.deadletters import record_broker_dead_letter

    record_broker_dead_letter(
        message_id=message_id or task.request.id,
        queue=agent_name,
        body=body,
        headers={"x-first-death-reason": "rejected"},
        error=str(exc),
    )


class PeriodicTask(AgentTask):
    """Base of beat's periodic tasks: a run that meets a database or broker outage is skipped (the next
    tick does the work) rather than failed, which would reject the message to the dead-letter queue."""

    def __call__(self, *args, **kwargs):
        from sentinai.kernel import dependencies

        try:
            return super().__call__(*args, **kwargs)
        except dependencies.database_errors() as exc:
            for conn in connections.all(initialized_only=True):
                conn.close()
            dependencies.down("database", exc, consequence="periodic work (relay, retries, SLA) waits for it")
            return {"skipped": "database unreachable"}
        except dependencies.broker_errors() as exc:
            dependencies.down("broker", exc, consequence="periodic work waits for it")
            return {"skipped": "broker unreachable"}


@app.task(base=PeriodicTask, name="sentinai.scheduler.tick")
def tick() -> dict:
    """Relay the outbox, re-offer due retries and stale parked events (all tenants)."""
    return scheduler.tick_all_tenants()


@app.task(base=PeriodicTask, name="sentinai.scheduler.reconcile_admission")
def reconcile_admission() -> dict[str, int]:
    """Re-count each tenant's open exceptions for admission control (corrects drift)."""
    return admission.reconcile_all_tenants()
