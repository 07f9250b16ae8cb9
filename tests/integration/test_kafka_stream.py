"""The Kafka event stream against the local broker: every recorded event reaches its tenant's topic, each
exception's events in sequence order with two relays at once and across a broker restart, a tenant's
topic holds only its own events, a forbidden topic waits, and replay re-publishes the history."""

from __future__ import annotations

import time
import uuid
from datetime import datetime

import orjson
import pytest
from django.core.management import call_command

from sentinai.eventstore import stream
from sentinai.eventstore.reader import load_envelopes
from sentinai.models import StreamOutbox
from sentinai.tenancy.scope import all_tenants_scope, tenant_scope
from tests.support.factories import make_exceptions, make_tenant, wait_until
from tests.support.kafka import Relay, append_sla, assert_in_sequence_per_exception, read_topic, restart_kafka_while

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


@pytest.fixture
def topic_template(settings):
    """Topics of this test only (a fresh prefix), in this process and in the relays it starts."""
    template = f"test.{uuid.uuid4().hex[:10]}.{{tenant}}"
    settings.SENTINAI = {**settings.SENTINAI, "KAFKA_TOPIC_TEMPLATE": template}
    return template


def test_two_relays_stream_1000_exceptions_each_in_sequence_order(tmp_path, topic_template):
    tenant_id = f"stream-{uuid.uuid4().hex[:6]}"
    make_tenant(tenant_id)
    ids = make_exceptions(tenant_id, 1000)
    expected = set()
    with Relay(tmp_path, topic_template, "a"), Relay(tmp_path, topic_template, "b"):
        for round_ in range(3):
            for start in range(0, 1000, 100):
                expected |= {e.event_id for e in append_sla(tenant_id, ids[start : start + 100], round_ / 10)}
        messages = read_topic(topic_template.format(tenant=tenant_id), expected)
        wait_until(lambda: StreamOutbox.objects.count() == 0, 30, message="the stream outbox to drain")
    first = assert_in_sequence_per_exception(messages)
    assert len(first) == 1000 and all(seqs == [1, 2, 3] for seqs in first.values())
    headers = dict(messages[0].headers())
    assert set(headers) == {"event_id", "event_type", "tenant_id", "schema_version"}
    assert headers["tenant_id"].decode() == tenant_id and headers["schema_version"] == b"1"


def test_a_broker_restart_mid_stream_loses_nothing_and_keeps_the_order(tmp_path, topic_template):
    tenant_id = f"restart-{uuid.uuid4().hex[:6]}"
    make_tenant(tenant_id)
    ids = make_exceptions(tenant_id, 200)
    expected = set()
    with Relay(tmp_path, topic_template) as relay:
        expected |= {e.event_id for e in append_sla(tenant_id, ids, 0.1)}

        def while_down():
            for fraction in (0.2, 0.3):
                expected.update(e.event_id for e in append_sla(tenant_id, ids, fraction))
            time.sleep(3)  # the relay keeps trying against a broker that is down

        restart_kafka_while(while_down)
        expected |= {e.event_id for e in append_sla(tenant_id, ids, 0.4)}
        messages = read_topic(topic_template.format(tenant=tenant_id), expected, timeout=180)
        assert relay.proc.poll() is None, relay.log()
    first = assert_in_sequence_per_exception(messages)
    assert all(seqs == [1, 2, 3, 4] for seqs in first.values())


def test_a_tenants_topic_holds_only_its_own_events(tmp_path, topic_template):
    a, b = f"iso-a-{uuid.uuid4().hex[:6]}", f"iso-b-{uuid.uuid4().hex[:6]}"
    for tenant_id in (a, b):
        make_tenant(tenant_id)
    events = {t: {e.event_id for e in append_sla(t, make_exceptions(t, 20), 0.5)} for t in (a, b)}
    call_command("relay_event_stream", "--once")
    for tenant_id, other in ((a, b), (b, a)):
        messages = read_topic(topic_template.format(tenant=tenant_id), events[tenant_id], timeout=60)
        got = {dict(m.headers())["event_id"].decode() for m in messages}
        assert got == events[tenant_id] and not got & events[other]
        assert {orjson.loads(m.value())["tenant_id"] for m in messages} == {tenant_id}
        assert_sent_as_stored(tenant_id, messages)


def assert_sent_as_stored(tenant_id, messages):
    """Each message is the stored event as replay sends it: its value `stream.value` of the envelope read
    back (recorded_at the stored one), its key the exception, its headers the event's."""
    with tenant_scope(tenant_id):
        stored = load_envelopes(tenant_id, [dict(m.headers())["event_id"].decode() for m in messages])
    for message in messages:
        headers = {k: v.decode() for k, v in message.headers()}
        sent, envelope = orjson.loads(message.value()), stored[headers["event_id"]]
        assert datetime.fromisoformat(sent.pop("recorded_at")) == envelope.recorded_at
        assert sent == {k: v for k, v in orjson.loads(stream.value(envelope)).items() if k != "recorded_at"}
        assert message.key().decode() == envelope.exception_id
        assert headers == {
            "event_id": envelope.event_id,
            "event_type": envelope.event_type,
            "tenant_id": tenant_id,
            "schema_version": str(envelope.schema_version),
        }


def test_rows_owed_before_the_messages_column_are_read_back_and_sent(topic_template):
    """A row written by a version before migration 0010 has no messages: the relay reads its events back
    from the event store, in order with the rows that carry theirs."""
    tenant_id = f"legacy-{uuid.uuid4().hex[:6]}"
    make_tenant(tenant_id)
    ids = make_exceptions(tenant_id, 30)
    old = {e.event_id for e in append_sla(tenant_id, ids, 0.2)}
    with all_tenants_scope():
        assert StreamOutbox.objects.filter(tenant_id=tenant_id, messages__isnull=True).count() == 0
        assert StreamOutbox.objects.filter(tenant_id=tenant_id).update(messages=None) > 0
    new = {e.event_id for e in append_sla(tenant_id, ids, 0.4)}
    call_command("relay_event_stream", "--once")
    messages = read_topic(topic_template.format(tenant=tenant_id), old | new, timeout=60)
    assert {dict(m.headers())["event_id"].decode() for m in messages} == old | new
    first = assert_in_sequence_per_exception(messages)
    assert all(seqs == [1, 2] for seqs in first.values())
    assert_sent_as_stored(tenant_id, messages)
    with all_tenants_scope():
        assert not StreamOutbox.objects.filter(tenant_id=tenant_id).exists()


def test_without_topic_creation_a_missing_topic_is_refused_and_its_events_wait(settings, topic_template, caplog):
    settings.SENTINAI = {**settings.SENTINAI, "KAFKA_CREATE_TOPICS": False}
    tenant_id = f"nocreate-{uuid.uuid4().hex[:6]}"
    make_tenant(tenant_id)
    append_sla(tenant_id, make_exceptions(tenant_id, 3), 0.5)
    call_command("relay_event_stream", "--once")
    with all_tenants_scope():
        owed = StreamOutbox.objects.filter(tenant_id=tenant_id).values_list("event_ids", flat=True)
        assert sum(len(ids) for ids in owed) == 3  # all three still owed
    assert "does not exist and SENTINAI_KAFKA_CREATE_TOPICS is off" in caplog.text


def test_replay_republishes_a_tenants_history_in_order(tmp_path, topic_template, capsys):
    tenant_id = f"replay-{uuid.uuid4().hex[:6]}"
    make_tenant(tenant_id)
    ids = make_exceptions(tenant_id, 50)
    history = set()
    for fraction in (0.1, 0.2):
        history |= {e.event_id for e in append_sla(tenant_id, ids, fraction)}
    with all_tenants_scope():
        StreamOutbox.objects.filter(tenant_id=tenant_id).delete()  # as if the stream had been off
    call_command("replay_event_stream", "--tenant", tenant_id)
    assert f"replayed 100 events of {tenant_id}" in capsys.readouterr().out
    messages = read_topic(topic_template.format(tenant=tenant_id), history, timeout=60)
    first = assert_in_sequence_per_exception(messages)
    assert all(seqs == [1, 2] for seqs in first.values())
