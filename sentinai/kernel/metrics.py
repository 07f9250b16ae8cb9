"""Prometheus metrics (GET /metrics), aggregated across every process of a host.

API processes (gunicorn) and Celery workers write their samples to PROMETHEUS_MULTIPROC_DIR
(prometheus-client multiprocess mode); /metrics merges them, and adds gauges read live at scrape time:
the outbox backlog and its age, the depth of every agent queue, and the event stream's backlog and lag.
"""

from __future__ import annotations

import logging
import os
import time

from django.conf import settings
from django.http import HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
E2E_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400)

EVENTS = Counter("sentinai_events_processed_total", "Events applied by agents.", ["agent", "event_type", "tenant"])
DUPLICATES = Counter(
    "sentinai_events_duplicate_total", "Events delivered again and skipped (already applied).", ["agent"]
)
PARKED = Counter("sentinai_events_parked_total", "Events parked until their predecessor is applied.", ["agent"])
FAILURES = Counter("sentinai_event_failures_total", "Failed decisions (each retried or dead-lettered).", ["agent"])
RETRIES = Counter("sentinai_retries_total", "Retries scheduled.", ["agent"])
DEAD_LETTERS = Counter("sentinai_dead_letters_total", "Dead letters recorded.", ["agent", "source"])
BATCH_SECONDS = Histogram(
    "sentinai_batch_seconds", "Time to process one batch (one transaction).", ["agent"], buckets=LATENCY_BUCKETS
)
EVENT_SECONDS = Histogram(
    "sentinai_event_processing_seconds",
    "Processing time per event (batch time over its events).",
    ["agent"],
    buckets=LATENCY_BUCKETS,
)
END_TO_END_SECONDS = Histogram(
    "sentinai_end_to_end_seconds",
    "From accepted to terminal (resolved, escalated, invalid).",
    ["outcome"],
    buckets=E2E_BUCKETS,
)
SLA_EVENTS = Counter("sentinai_sla_events_total", "SLA events announced.", ["kind", "severity"])
REFUSED = Counter("sentinai_admission_refused_total", "Requests refused with 429.", ["tenant", "limit"])
ADMISSION_DEGRADED = Counter(
    "sentinai_admission_degraded_total",
    "Admission decisions taken without Redis (rate: per-process bucket; in_flight: not enforced).",
    ["limit"],
)
PUBLISHED = Counter("sentinai_outbox_published_total", "Outbox batches published.", ["path"])
STREAM_PUBLISHED = Counter("sentinai_stream_events_published_total", "Events Kafka acknowledged on the event stream.")
STREAM_FAILURES = Counter(
    "sentinai_stream_delivery_failures_total", "Events of the event stream Kafka did not acknowledge (sent again)."
)
KAFKA_INGESTED = Counter("sentinai_kafka_ingested_total", "Exceptions taken in from Kafka ingest topics.")
KAFKA_REJECTED = Counter("sentinai_kafka_rejected_total", "Ingest messages refused to their <topic>.rejected.")
HTTP_SECONDS = Histogram(
    "sentinai_http_request_seconds", "API request latency.", ["method", "route", "status"], buckets=LATENCY_BUCKETS
)


def tenant_label(tenant_id: str) -> str:
    """The tenant label value: "-" (no tenant's name or volume on the scrape), unless the tenant is in
    the allow-list SENTINAI_METRICS_TENANTS or SENTINAI_METRICS_TENANT_LABELS labels every tenant."""
    config = settings.SENTINAI
    if config.get("METRICS_TENANT_LABELS", False) or tenant_id in config.get("METRICS_TENANTS", ()):
        return tenant_id
    return "-"


class LiveCollector:
    """Gauges read at scrape time."""

    def collect(self):
        backlog = GaugeMetricFamily(
            "sentinai_outbox_backlog", "Outbox batches not yet consumed.", labels=["queue", "state"]
        )
        age = GaugeMetricFamily(
            "sentinai_outbox_oldest_age_seconds", "Age of the oldest unconsumed outbox batch.", labels=["queue"]
        )
        depth = GaugeMetricFamily(
            "sentinai_queue_depth", "Messages ready in each agent's queues (all its lanes).", labels=["queue"]
        )
        lane_depth = GaugeMetricFamily(
            "sentinai_lane_depth",
            "Messages ready in each lane; dedicated lanes of tenants off the metrics allow-list sum as tenant-*.",
            labels=["queue", "agent", "lane"],
        )
        tenant_backlog = GaugeMetricFamily(
            "sentinai_tenant_backlog_events",
            "Events owed to each agent, per tenant (allow-listed tenants; the rest sum under -).",
            labels=["agent", "tenant"],
        )
        stream_backlog = GaugeMetricFamily("sentinai_stream_backlog_events", "Events owed to the Kafka event stream.")
        stream_age = GaugeMetricFamily(
            "sentinai_stream_lag_seconds", "Age of the oldest event owed to the Kafka event stream."
        )
        try:
            from django.db import connection

            from sentinai.tenancy.scope import all_tenants_scope

            with all_tenants_scope(), connection.cursor() as cursor:
                cursor.execute(
                    "SELECT queue, published_at IS NULL, count(*), "
                    "extract(epoch FROM (CURRENT_TIMESTAMP - min(created_at))) FROM outbox GROUP BY 1, 2"
                    if connection.vendor == "postgresql"
                    else "SELECT queue, published_at IS NULL, count(*), 0 FROM outbox GROUP BY 1, 2"
                )
                oldest: dict[str, float] = {}
                for queue, unpublished, count, seconds in cursor.fetchall():
                    backlog.add_metric([queue, "unpublished" if unpublished else "published"], count)
                    oldest[queue] = max(oldest.get(queue, 0.0), float(seconds or 0))
                for queue, seconds in oldest.items():
                    age.add_metric([queue], seconds)
                cursor.execute(
                    "SELECT coalesce(sum(jsonb_array_length(event_ids)), 0), "
                    "coalesce(extract(epoch FROM (CURRENT_TIMESTAMP - min(created_at))), 0) FROM stream_outbox"
                    if connection.vendor == "postgresql"
                    else "SELECT coalesce(sum(json_array_length(event_ids)), 0), 0 FROM stream_outbox"
                )
                events, seconds = cursor.fetchone()
                stream_backlog.add_metric([], int(events))
                stream_age.add_metric([], float(seconds))
                cursor.execute(
                    "SELECT queue, tenant_id, sum(jsonb_array_length(event_ids)) FROM outbox GROUP BY 1, 2"
                    if connection.vendor == "postgresql"
                    else "SELECT queue, tenant_id, sum(json_array_length(event_ids)) FROM outbox GROUP BY 1, 2"
                )
                owed: dict[tuple[str, str], int] = {}
                for queue, tenant_id, count in cursor.fetchall():
                    key = (queue, tenant_label(tenant_id))
                    owed[key] = owed.get(key, 0) + int(count or 0)
                for labels, count in owed.items():
                    tenant_backlog.add_metric(list(labels), count)
        except Exception as exc:  # a scrape reports what it can
            logger.warning("outbox gauges unavailable: %s", exc)
        try:
            from config import routing
            from config.celery import app as celery_app

            totals: dict[str, int] = {}
            lanes: dict[tuple[str, str, str], int] = {}
            with celery_app.connection_for_write() as conn:
                channel = conn.default_channel
                for queue in routing.work_queues():
                    ready = channel.queue_declare(queue=queue.name, passive=True).message_count
                    agent = routing.agent_of(queue.name)
                    totals[agent] = totals.get(agent, 0) + ready
                    if queue.name == agent:
                        continue
                    lane = queue.name.split(".", 1)[1]
                    if lane.startswith(routing.DEDICATED_PREFIX):
                        lane = routing.DEDICATED_PREFIX + tenant_label(lane.removeprefix(routing.DEDICATED_PREFIX))
                        lane = lane if lane != routing.DEDICATED_PREFIX + "-" else routing.DEDICATED_PREFIX + "*"
                    key = (f"{agent}.{lane}", agent, lane)
                    lanes[key] = lanes.get(key, 0) + ready
            for queue_name, ready in totals.items():
                depth.add_metric([queue_name], ready)
            for labels, ready in lanes.items():
                lane_depth.add_metric(list(labels), ready)
        except Exception as exc:
            logger.warning("queue depths unavailable: %s", exc)
        yield from (backlog, age, depth, lane_depth, tenant_backlog, stream_backlog, stream_age)


def process_registry() -> CollectorRegistry:
    """The samples of every process on this host (multiprocess mode), or of this process."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    from prometheus_client import multiprocess

    _forget_dead_processes(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)
    return merged


def _forget_dead_processes(directory: str) -> None:
    """Live gauges (sentinai_dependency_up) of processes that are gone - a SIGKILLed worker, a
    gunicorn worker its master replaced - must not count: fold them away before merging. Every
    writer of the directory runs on this host, so a pid that does not answer is dead."""
    from pathlib import Path

    from prometheus_client import multiprocess

    for path in Path(directory).glob("gauge_live*_*.db"):
        try:
            pid = int(path.stem.rsplit("_", 1)[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, directory)
        except (ValueError, PermissionError):
            continue


def queue_stats() -> dict[str, tuple[int, int]]:
    """Broker queue name -> (messages ready, consumers attached) of every work queue (passive declares).
    Read by the scrape (sentinai_queue_consumers) and the admin's operations overview."""
    from config import routing
    from config.celery import app as celery_app

    stats = {}
    with celery_app.connection_for_write() as conn:
        channel = conn.default_channel
        for queue in routing.work_queues():
            ok = channel.queue_declare(queue=queue.name, passive=True)
            stats[queue.name] = (ok.message_count, ok.consumer_count)
    return stats


class ConsumersCollector:
    """sentinai_queue_consumers{queue}: a queue nobody consumes is work that waits forever (an alert)."""

    def collect(self):
        consumers = GaugeMetricFamily(
            "sentinai_queue_consumers", "Consumers (workers) attached to each broker work queue.", labels=["queue"]
        )
        try:
            for queue, (_ready, attached) in queue_stats().items():
                consumers.add_metric([queue], attached)
        except Exception as exc:
            logger.warning("queue consumers unavailable: %s", exc)
        yield consumers


_zeroed = False


def _zero_series() -> None:
    """Create the series the shipped alerts and dashboard read (monitoring/), at 0, once per process:
    `increase()` of a series that does not exist yet is "no data", not 0, and a dead letter or an SLA
    expiry would otherwise start its series at 1 and never show as an increase."""
    global _zeroed
    if _zeroed:
        return
    from config import routing

    for agent in routing.AGENTS:
        for counter in (FAILURES, RETRIES, DUPLICATES, PARKED):
            counter.labels(agent)
        DEAD_LETTERS.labels(agent, "handler")
        DEAD_LETTERS.labels(agent, "broker")
        BATCH_SECONDS.labels(agent)
        EVENT_SECONDS.labels(agent)
    for kind in ("imminent", "expired"):
        for severity in ("critical", "high", "medium", "low"):
            SLA_EVENTS.labels(kind, severity)
    for limit in ("rate", "in_flight"):
        REFUSED.labels("-", limit)
    for outcome in ("resolved", "escalated", "invalid"):
        END_TO_END_SECONDS.labels(outcome)
    _zeroed = True


def metrics_view(request):
    _zero_series()
    live = CollectorRegistry()
    live.register(LiveCollector())
    live.register(ConsumersCollector())
    return HttpResponse(generate_latest(process_registry()) + generate_latest(live), content_type=CONTENT_TYPE_LATEST)


def mark_process_dead(pid: int) -> None:
    """Fold a finished process's live gauges away (multiprocess mode); counters stay."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


class RequestMetricsMiddleware:
    """Latency of every API request, by route pattern (not path: ids would explode the labels)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = match.route if match else "unmatched"
        HTTP_SECONDS.labels(request.method, route, str(response.status_code)).observe(time.perf_counter() - started)
        return response
