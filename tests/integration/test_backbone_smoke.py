import pytest

from sentinai.models import Outbox, ProcessedEvent
from sentinai.tenancy.scope import tenant_scope
from tests.support.factories import append, make_exceptions, make_tenant, wait_until
from tests.support.probes import IMPLEMENTATIONS
from tests.support.workers import WorkerProcess


@pytest.mark.django_db(transaction=True)
def test_batch_flows_through_two_agents(purge_broker, log_dir):
    make_tenant("acme")
    ids = make_exceptions("acme", 50)
    with WorkerProcess(["triage", "policy"], log_dir=log_dir, agents=IMPLEMENTATIONS) as worker:
        for i in ids:
            append("acme", i, "TriageRequested", {"exception_type": "x"})

        def done():
            with tenant_scope("acme"):
                return ProcessedEvent.objects.filter(consumer="policy").count() == 50

        wait_until(done, 30)
        with tenant_scope("acme"):
            assert ProcessedEvent.objects.filter(consumer="triage").count() == 50
            wait_until(lambda: not Outbox.objects.exists(), 10)
        print(worker.log()[-2000:])
