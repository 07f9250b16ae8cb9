"""Managed Kafka is configuration: the event stream through the local broker's SASL_SSL listener (TLS
verified against its CA, SCRAM-SHA-512, as on AWS MSK), set by the KAFKA_* settings alone; a wrong
password is refused and the events wait."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion
from django.core.management import call_command

from sentinai.models import StreamOutbox
from sentinai.tenancy.scope import all_tenants_scope
from tests.support.factories import make_exceptions, make_tenant
from tests.support.kafka import append_sla, assert_in_sequence_per_exception, read_topic

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

USER, PASSWORD = "sentinai", "sentinai-dev-only"  # scripts/services.sh: development credentials


def broker_tls_dir() -> Path:
    """The CA of the running local broker (next to the server.properties it was started with)."""
    out = subprocess.run(["pgrep", "-af", "kafka.Kafka .*server.properties"], capture_output=True, text=True).stdout
    properties = Path(out.split()[-1])
    return properties.parent / "tls"


@pytest.fixture
def sasl_settings(settings):
    # The user is created when the storage is formatted; upserting it here also covers a broker formatted
    # before the listener existed.
    admin = AdminClient({"bootstrap.servers": "127.0.0.1:9092"})
    upsert = UserScramCredentialUpsertion(
        USER, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), PASSWORD.encode()
    )
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result(timeout=30)
    settings.KAFKA_BOOTSTRAP_SERVERS = "127.0.0.1:9094"
    settings.KAFKA_SECURITY_PROTOCOL = "SASL_SSL"
    settings.KAFKA_SASL_MECHANISM = "SCRAM-SHA-512"
    settings.KAFKA_SASL_USERNAME = USER
    settings.KAFKA_SASL_PASSWORD = PASSWORD
    settings.KAFKA_SSL_CA_LOCATION = str(broker_tls_dir() / "ca.pem")
    settings.SENTINAI = {**settings.SENTINAI, "KAFKA_TOPIC_TEMPLATE": f"test.{uuid.uuid4().hex[:10]}.{{tenant}}"}
    return settings


def test_the_stream_flows_through_sasl_ssl_with_scram(sasl_settings):
    tenant_id = f"sasl-{uuid.uuid4().hex[:6]}"
    make_tenant(tenant_id)
    ids = make_exceptions(tenant_id, 30)
    expected = {e.event_id for f in (0.1, 0.2) for e in append_sla(tenant_id, ids, f)}
    call_command("relay_event_stream", "--once")
    messages = read_topic(sasl_settings.SENTINAI["KAFKA_TOPIC_TEMPLATE"].format(tenant=tenant_id), expected, 60)
    assert all(seqs == [1, 2] for seqs in assert_in_sequence_per_exception(messages).values())


def test_a_wrong_password_is_refused_and_the_events_wait(sasl_settings, caplog):
    sasl_settings.KAFKA_SASL_PASSWORD = "wrong"
    sasl_settings.KAFKA_CONFIG = {"socket.timeout.ms": 5000}
    tenant_id = f"saslno-{uuid.uuid4().hex[:6]}"
    make_tenant(tenant_id)
    append_sla(tenant_id, make_exceptions(tenant_id, 1), 0.1)
    call_command("relay_event_stream", "--once")
    with all_tenants_scope():
        assert StreamOutbox.objects.filter(tenant_id=tenant_id).exists()
    assert "waits" in caplog.text
