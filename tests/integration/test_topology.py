"""After a worker starts, RabbitMQ holds the agents' lanes as quorum queues with the delivery limit and
the dead-letter exchange; a worker started with -Q triage consumes all of triage's lanes and nothing
else, and one started with -Q triage.tenant-<id> consumes that dedicated lane alone."""

import pytest
from django.conf import settings

from config import routing
from tests.support.broker import rabbitmqctl
from tests.support.factories import wait_until
from tests.support.workers import WorkerProcess


def prefetch() -> dict[str, int]:
    """The prefetch limit of each consumer of a work queue (RabbitMQ applies it per consumer)."""
    lines = rabbitmqctl("list_consumers", "queue_name", "prefetch_count").splitlines()
    return {
        name: int(count) for name, count in (line.split("\t") for line in lines) if "." in name and "pidbox" not in name
    }


@pytest.mark.django_db(transaction=True)
def test_worker_declares_quorum_queues_and_consumes_only_its_queue(purge_broker, log_dir):
    def list_queues():
        queues = {}
        for line in rabbitmqctl("list_queues", "name", "type", "arguments", "consumers").splitlines():
            name, qtype, arguments, consumers = line.split("\t")
            queues[name] = (qtype, arguments, int(consumers))
        return queues

    triage = set(routing.agent_lanes("triage"))
    with WorkerProcess(["triage"], name="only-triage", pool="threads", concurrency=2, log_dir=log_dir):
        # The worker reports ready a moment before its consumer is registered (and consumers of
        # workers stopped by earlier tests may take a moment to go).
        def settled():
            listed = list_queues()
            consumers = {q.name: listed[q.name][2] for q in routing.work_queues() if q.name in listed}
            expected = {q.name: int(q.name in triage) for q in routing.work_queues()}
            return listed if consumers == expected else None

        queues = wait_until(settled, 30, message="triage's lanes to have the only consumers")
        # Two slots, four lanes: each lane may hold one message, so no lane takes both slots.
        assert prefetch() == dict.fromkeys(triage, 1)
    limit = settings.BROKER_DELIVERY_LIMIT
    names = [q.name for q in routing.work_queues()]
    assert set(names) <= set(queues) and len(triage) == settings.SENTINAI["LANES"]
    for name in names:
        qtype, arguments, _ = queues[name]
        assert qtype == "quorum", name
        assert f'{{"x-delivery-limit",{limit}}}' in arguments, arguments
        assert '{"x-dead-letter-exchange","sentinai.dlx"}' in arguments
        assert '{"x-dead-letter-strategy","at-least-once"}' in arguments
    assert queues["dead_letter"][0] == "quorum"
    assert not [name for name in queues if name.startswith("celery_delayed")]


@pytest.mark.django_db(transaction=True)
def test_a_dedicated_lane_is_declared_like_the_others_and_one_worker_serves_it_alone(purge_broker, log_dir):
    env = {"SENTINAI_DEDICATED_LANES": "acme-lane"}
    with WorkerProcess(
        ["triage.tenant-acme-lane"], name="acme-lane", pool="threads", concurrency=2, log_dir=log_dir, env=env
    ):

        def settled():
            rows = [
                line.split("\t") for line in rabbitmqctl("list_queues", "name", "consumers", "arguments").splitlines()
            ]
            lanes = {q.name for q in routing.work_queues()} | {f"{a}.tenant-acme-lane" for a in routing.LANED_AGENTS}
            consumed = {name: int(n) for name, n, _ in rows if name in lanes and int(n)}
            return rows if consumed == {"triage.tenant-acme-lane": 1} else None

        rows = wait_until(settled, 30, message="the dedicated lane to have the only consumer")
        # A worker on one lane uses both its slots for it.
        assert prefetch() == {"triage.tenant-acme-lane": 2}
    arguments = {name: args for name, _, args in rows}
    # The dedicated lane of every laned agent is declared, with the same arguments as a shared lane.
    for agent in routing.LANED_AGENTS:
        assert arguments[f"{agent}.tenant-acme-lane"] == arguments[f"{agent}.0"], agent
