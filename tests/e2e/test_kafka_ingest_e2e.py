"""End to end from Kafka: an exception a source system publishes to its ingest topic is taken in by
`consume_kafka_ingest` and resolved by the real agents on RabbitMQ, like one posted over HTTP."""

from __future__ import annotations

import uuid

import pytest

from exceptions_app.models import ExceptionRecord
from sentinai.models import ExceptionEvent
from sentinai.tenancy import admission
from sentinai.tenancy.scope import tenant_scope
from tests.support.factories import wait_until
from tests.support.finance import create_finance_tenant
from tests.support.kafka_ingest import Ingest, committed, create_topic, produce
from tests.support.platform import Platform
from tests.support.scenarios import TERMINAL, is_subsequence, settlement
from tests.support.webhook import Webhook

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def test_an_exception_published_to_kafka_is_resolved_by_the_agents(tmp_path):
    tenant_id = f"kafka-e2e-{uuid.uuid4().hex[:8]}"
    topic = create_topic()
    with Webhook() as webhook:
        create_finance_tenant(tenant_id, webhook)
        admission.backend().reset(tenant_id)
        with Platform(tmp_path), Ingest(tmp_path, {topic: tenant_id}) as ingest:
            body = {
                "source_system": "settlement-engine",
                "source_ref": "KAFKA-1",
                "exception_type": "SETTLEMENT_FAILURE",
                "payload": settlement(50_000),
            }
            produce(topic, [(body, [("Idempotency-Key", b"kafka-e2e-1")])])
            wait_until(lambda: committed(ingest.group, topic) == 1, 60, message="the message taken in")

            def closed():
                with tenant_scope(tenant_id):
                    row = ExceptionRecord.objects.filter(tenant_id=tenant_id, source_ref="KAFKA-1").first()
                return row if row is not None and row.status in TERMINAL else None

            row = wait_until(closed, 90, interval=0.5, message="the exception to be resolved")
    assert (row.status, row.exception_type, row.severity) == ("resolved", "SETTLEMENT_FAILURE", "medium")
    assert row.idempotency_key == "kafka-e2e-1"
    with tenant_scope(tenant_id):
        chain = list(
            ExceptionEvent.objects.filter(exception_id=row.id).order_by("sequence").values_list("event_type", flat=True)
        )
    assert is_subsequence(
        ["ExceptionIngested", "ExceptionNormalized", "TriageCompleted", "PlaybookMatched", "ToolExecutionCompleted",
         "PlaybookCompleted", "ExceptionResolved"],
        chain,
    ), chain  # fmt: skip
