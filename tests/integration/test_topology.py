"""After a worker starts, RabbitMQ holds the agent queues as quorum queues with the delivery limit and
the dead-letter exchange, and a worker started with -Q triage consumes triage only."""

import subprocess

import pytest
from django.conf import settings

from config import routing
from tests.support.factories import wait_until
from tests.support.workers import WorkerProcess


def rabbitmqctl(*args) -> str:
    vhost = settings.CELERY_BROKER_URL.rsplit("/", 1)[-1] or "/"
    return subprocess.run(
        ["rabbitmqctl", "-q", "--no-table-headers", "-p", vhost, *args], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.django_db(transaction=True)
def test_worker_declares_quorum_queues_and_consumes_only_its_queue(purge_broker, log_dir):
    def list_queues():
        queues = {}
        for line in rabbitmqctl("list_queues", "name", "type", "arguments", "consumers").splitlines():
            name, qtype, arguments, consumers = line.split("\t")
            queues[name] = (qtype, arguments, int(consumers))
        return queues

    with WorkerProcess(["triage"], name="only-triage", log_dir=log_dir):
        # The worker reports ready a moment before its consumer is registered (and consumers of
        # workers stopped by earlier tests may take a moment to go).
        def settled():
            q = list_queues()
            consumers = {name: q[name][2] for name in routing.AGENTS}
            return q if consumers == {name: int(name == "triage") for name in routing.AGENTS} else None

        queues = wait_until(settled, 30, message="triage to have the only consumer")
    limit = settings.BROKER_DELIVERY_LIMIT
    for name in (*routing.AGENTS, routing.SCHEDULER_QUEUE):
        qtype, arguments, _ = queues[name]
        assert qtype == "quorum", name
        assert f'{{"x-delivery-limit",{limit}}}' in arguments, arguments
        assert '{"x-dead-letter-exchange","sentinai.dlx"}' in arguments
    assert queues["dead_letter"][0] == "quorum"
    assert queues["triage"][2] == 1
    assert all(queues[name][2] == 0 for name in routing.AGENTS if name != "triage")
    assert not [name for name in queues if name.startswith("celery_delayed")]
