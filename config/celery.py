"""The Celery application. Reliability settings follow ../shared/notes (see docs/architecture.md)."""

import gc
import os

from celery import Celery, bootsteps
from celery.signals import worker_init, worker_process_init

from config import routing, serialization

serialization.install()

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

# LaneAMQP: `-Q triage` selects all of triage's lanes (config/routing.py).
app = Celery("sentinai", amqp="config.routing:LaneAMQP")
app.config_from_object("django.conf:settings", namespace="CELERY")


def _configure(app: Celery) -> None:
    from django.conf import settings

    app.conf.update(
        task_queues=routing.work_queues(),
        task_routes=(routing.route_task,),
        task_default_exchange=routing.EXCHANGE.name,
        task_default_exchange_type="topic",
        task_default_queue=routing.SCHEDULER_QUEUE,
        task_default_routing_key=routing.SCHEDULER_QUEUE,
        task_create_missing_queues=False,
        # Ack after the batch committed; a worker that dies holding a batch returns it to the
        # queue (the quorum delivery limit breaks crash loops); a task that fails terminally is
        # rejected without requeue, i.e. dead-lettered, not silently acked.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure=False,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_extended=False,
        broker_transport_options={
            "confirm_publish": True,
            "max_retries": 3,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_pool_acquire_timeout=10,
        broker_heartbeat=30,
        worker_send_task_events=settings.CELERY_WORKER_SEND_TASK_EVENTS,
        task_send_sent_event=False,
        worker_consumer="sentinai.pipeline.worker:Consumer",
        worker_hijack_root_logger=False,
        beat_schedule=_beat_schedule(settings),
        # Reports broker outages once (sentinai.dependencies) rather than a traceback per task and tick.
        beat_scheduler="sentinai.pipeline.beat:Scheduler",
        # Keep Django's DB connection across tasks (the fixup would otherwise close it around
        # every task); health is checked by CONN_HEALTH_CHECKS and on errors.
        CELERY_DB_REUSE_MAX=1_000_000,
    )
    if app.conf.broker_url.startswith("memory://"):
        # The in-process broker is polled; keep hops short.
        app.conf.broker_transport_options = {"polling_interval": 0.05}
    if settings.CELERY_BROKER_USE_SSL:
        app.conf.broker_use_ssl = True


def _beat_schedule(settings) -> dict:
    cfg = settings.SENTINAI
    return {
        "scheduler-tick": {
            "task": "sentinai.scheduler.tick",
            "schedule": cfg["SCHEDULER_TICK_SECONDS"],
            "options": {"expires": max(5.0, cfg["SCHEDULER_TICK_SECONDS"] * 5)},
        },
        "sla-scan": {
            "task": "agents.sla.scan",
            "schedule": cfg["SLA_SCAN_SECONDS"],
            "options": {"expires": max(10.0, cfg["SLA_SCAN_SECONDS"] * 5)},
        },
        "admission-reconcile": {
            "task": "sentinai.scheduler.reconcile_admission",
            "schedule": cfg["ADMISSION_RECONCILE_SECONDS"],
            "options": {"expires": cfg["ADMISSION_RECONCILE_SECONDS"]},
        },
    }


class DeclareTopology(bootsteps.StartStopStep):
    """Declare the dead-letter exchange and queue whenever the worker (re)connects."""

    requires = {"celery.worker.consumer.connection:Connection"}

    def start(self, c):
        routing.declare_topology(c.connection)


_configure(app)
app.steps["consumer"].add(DeclareTopology)
# sentinai.pipeline.tasks generates every agent's batch task from the routing table; agents.sla adds its scan.
app.autodiscover_tasks(lambda: ["sentinai.pipeline", "agents.sla"])


@worker_init.connect
@worker_process_init.connect
def _tune_garbage_collector(**kwargs):
    """A batch allocates tens of thousands of short-lived objects; with the default thresholds the
    collector runs dozens of times per batch and walks every long-lived object of Django and Celery.
    Freeze what start-up created and collect the young generation less often."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
