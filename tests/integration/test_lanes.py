"""Lanes on the real broker: the outbox publishes a tenant's batch to its lane, a worker on `-Q triage`
applies it, the relay re-sends to the lane what an old queue still holds, and `manage.py lanes
--move-legacy` empties a pre-lanes agent queue into the lanes."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from kombu import Producer, Queue

from config import routing
from config.celery import app as celery_app
from sentinai.eventstore import message, outbox, store
from sentinai.management.commands.consume_dead_letters import handle_message
from sentinai.models import DeadLetter, Outbox, ProcessedEvent
from sentinai.tenancy.scope import all_tenants_scope, tenant_scope
from tests.support.factories import make_exceptions, make_tenant, wait_until
from tests.support.probes import IMPLEMENTATIONS
from tests.support.workers import WorkerProcess

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

TENANT = "acme"  # lane 2 of 4


def legacy_queue(name: str) -> Queue:
    """A pre-lanes agent queue, declared as the routing table declared it then."""
    return Queue(
        name, routing.EXCHANGE, routing_key=name, durable=True, queue_arguments=routing.work_queues()[0].queue_arguments
    )


def ready(queue: str) -> int:
    with celery_app.connection_for_write() as conn:
        return conn.default_channel.queue_declare(queue=queue, passive=True).message_count


def append_triage_requests(ids: list[str]) -> None:
    with tenant_scope(TENANT):
        store.append(
            tenant_id=TENANT,
            events=[store.NewEvent(i, "TriageRequested", {"exception_type": "SETTLEMENT_FAILURE"}) for i in ids],
            producer="intake",
        )


def applied_by_triage() -> int:
    with tenant_scope(TENANT):
        return ProcessedEvent.objects.filter(consumer="triage").count()


@pytest.fixture
def tenant(purge_broker):
    make_tenant(TENANT)
    yield TENANT
    with celery_app.connection_for_write() as conn:
        legacy_queue("triage")(conn.default_channel).delete()


def test_a_batch_goes_to_its_tenants_lane_and_a_worker_on_the_agent_applies_it(tenant, log_dir):
    ids = make_exceptions(TENANT, 3)
    append_triage_requests(ids)
    lane = routing.lane_queue("triage", TENANT)
    assert lane == "triage.2" and ready(lane) == 1
    assert all(ready(other) == 0 for other in routing.agent_lanes("triage") if other != lane)
    with WorkerProcess(["triage"], log_dir=log_dir, agents=IMPLEMENTATIONS):
        wait_until(lambda: applied_by_triage() == 3, 30, message="triage to apply the batch")


def test_the_relay_sends_a_batch_left_in_a_pre_lanes_queue_to_the_lane(tenant, settings):
    ids = make_exceptions(TENANT, 2)
    append_triage_requests(ids)
    # As if published before the upgrade: the message sits in the old `triage` queue, which no
    # worker consumes any more, and the tenant's lane is empty.
    with celery_app.connection_for_write() as conn:
        legacy_queue("triage")(conn.default_channel).declare()
        conn.default_channel.queue_purge(routing.lane_queue("triage", TENANT))
    with tenant_scope(TENANT):
        row = Outbox.objects.get()
        Outbox.objects.update(published_at=timezone.now() - timedelta(minutes=10))
    settings.SENTINAI = {**settings.SENTINAI, "OUTBOX_REDELIVER_SECONDS": 60}
    assert outbox.relay_all_tenants() == 1
    assert ready(routing.lane_queue("triage", TENANT)) == 1
    with tenant_scope(TENANT):
        assert Outbox.objects.get(id=row.id).publish_count == row.publish_count + 1


def test_move_legacy_empties_the_old_queues_into_each_tenants_lane(tenant):
    lane = routing.lane_queue("triage", TENANT)
    body = message.encode(tenant_id=TENANT, agent="triage", outbox_ids=[7], events=[])
    with celery_app.connection_for_write() as conn:
        legacy_queue("triage")(conn.default_channel).declare()
        celery_app.send_task(
            message.task_name("triage"), args=[body], queue=legacy_queue("triage"), routing_key="triage"
        )
        Producer(conn.default_channel).publish(
            b"[[{}], {}, {}]",
            exchange=routing.EXCHANGE.name,
            routing_key="triage",
            content_type="application/json",
            content_encoding="utf-8",
            headers={"id": "no-tenant", "task": message.task_name("triage")},
        )
    wait_until(lambda: ready("triage") == 2, 10)

    call_command("lanes", "--move-legacy")

    assert ready("triage") == 0
    with celery_app.connection_for_write() as conn:
        moved = conn.default_channel.basic_get(lane, no_ack=True)
        # The one that names no tenant went to the dead-letter queue, through the old queue's DLX.
        wait_until(lambda: ready(routing.DEAD_LETTER_QUEUE) == 1, 10)
    assert moved.headers["task"] == "agents.triage.handle_batch"
    assert json.loads(moved.body)[0] == [body]


def test_a_message_dead_lettered_from_a_lane_is_recorded_under_its_agent(tenant, log_dir):
    lane = routing.lane_queue("triage", TENANT)
    with celery_app.connection_for_write() as conn:
        Producer(conn.default_channel).publish(
            b"{this is not json",
            exchange=routing.EXCHANGE.name,
            routing_key=lane,
            content_type="application/json",
            content_encoding="utf-8",
            headers={"id": "poison-in-a-lane", "task": message.task_name("triage")},
        )
    with WorkerProcess(["triage"], log_dir=log_dir, agents=IMPLEMENTATIONS):
        wait_until(lambda: ready(routing.DEAD_LETTER_QUEUE) == 1, 30, message="the worker to dead-letter it")
    with celery_app.connection_for_write() as conn:
        dead = routing.dead_letter_queue()(conn.default_channel).get(no_ack=False)
        assert dead.headers["x-death"][0]["queue"] == lane
        handle_message(dead)
    with all_tenants_scope():
        assert DeadLetter.objects.get(message_id="poison-in-a-lane").consumer == "triage"
