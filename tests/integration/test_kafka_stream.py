"""The Kafka event stream against the local broker: every recorded event reaches its tenant's topic, each
exception's events in sequence order with two relays at once and across a broker restart, a tenant's
topic holds only its own events, a forbidden topic waits, and replay re-publishes the history."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer
from django.core.management import call_command

from sentinai.eventstore import store
from sentinai.kernel import kafka
from sentinai.models import StreamOutbox
from sentinai.tenancy.scope import all_tenants_scope, tenant_scope
from tests.support.factories import make_exceptions, make_tenant, wait_until
from tests.support.workers import ROOT, service_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


@pytest.fixture
def topic_template(settings):
    """Topics of this test only (a fresh prefix), in this process and in the relays it starts."""
    template = f"test.{uuid.uuid4().hex[:10]}.{{tenant}}"
    settings.SENTINAI = {**settings.SENTINAI, "KAFKA_TOPIC_TEMPLATE": template}
    return template


class Relay:
    """`manage.py relay_event_stream` as a child process on the test database."""

    def __init__(self, tmp_path, template: str, name: str = "relay", **env):
        self.log_path = tmp_path / f"{name}.log"
        self.env = service_env(SENTINAI_KAFKA_TOPIC_TEMPLATE=template, **env)
        self.proc = None

    def __enter__(self) -> Relay:
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "relay_event_stream", "--idle", "0.05"],
            cwd=ROOT, env=self.env, stdout=self.log_path.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_until(lambda: "relaying" in self.log() or self.proc.poll() is not None, 60)
        assert self.proc.poll() is None, self.log()
        return self

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def append_sla(tenant_id: str, exception_ids: list[str], fraction: float) -> list:
    """One event per exception, in one transaction (SLAImminent: no agent consumes it, so only the
    stream carries it)."""
    with tenant_scope(tenant_id):
        return store.append(
            tenant_id=tenant_id,
            producer="sla",
            events=[
                store.NewEvent(i, "SLAImminent", {"severity": "high", "sla_due_at": "2030-01-01T00:00:00Z",
                                                   "fraction": fraction})
                for i in exception_ids
            ],
        )  # fmt: skip


def read_topic(topic: str, expected_ids: set[str], timeout: float = 120.0) -> list:
    """Every message of the topic from the start until each expected event id was seen."""
    consumer = Consumer(
        kafka.client_config(
            **{
                "group.id": f"test-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                # A topic the relay creates after this subscribes is noticed within a second.
                "topic.metadata.refresh.interval.ms": 1000,
            }
        )
    )
    consumer.subscribe([topic])
    messages, seen = [], set()
    deadline = time.monotonic() + timeout
    try:
        while not expected_ids <= seen and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            messages.append(message)
            seen.add(dict(message.headers())["event_id"].decode())
    finally:
        consumer.close()
    missing = expected_ids - seen
    with all_tenants_scope():
        owed = StreamOutbox.objects.count()
    assert not missing, f"{len(missing)} of {len(expected_ids)} events never reached {topic} ({owed} outbox rows owed)"
    return messages


def assert_in_sequence_per_exception(messages) -> dict[str, list[int]]:
    """Each exception's events, first occurrences, are in sequence order on one partition; a
    duplicate repeats an event id already seen (at least once, never a new reordering)."""
    first: dict[str, list[int]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    seen: set[str] = set()
    for message in messages:
        body = orjson.loads(message.value())
        assert message.key().decode() == body["exception_id"]
        assert dict(message.headers())["event_type"].decode() == body["event_type"]
        partitions[body["exception_id"]].add(message.partition())
        if body["event_id"] in seen:
            continue
        seen.add(body["event_id"])
        first[body["exception_id"]].append(body["sequence"])
    for exception_id, sequences in first.items():
        assert sequences == sorted(sequences), (exception_id, sequences)
        assert len(partitions[exception_id]) == 1, exception_id
    return first


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


def _kafka_pid() -> int:
    out = subprocess.run(["pgrep", "-f", "kafka.Kafka .*server.properties"], capture_output=True, text=True).stdout
    (pid,) = [int(p) for p in out.split()]
    return pid


def restart_kafka_while(action) -> None:
    """Stop the local broker, run `action` while it is down, then start it again with the very same
    command line (data directory, ports) and wait until it answers."""
    pid = _kafka_pid()
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    cwd = os.readlink(f"/proc/{pid}/cwd")
    log = open(f"/proc/{pid}/fd/1", "ab")  # noqa: SIM115 - handed to the new broker
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 60, message="the broker to stop")
    try:
        action()
    finally:
        subprocess.Popen(cmdline, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        probe = [sys.executable, str(ROOT / "scripts" / "kafka_probe.py"), "127.0.0.1:9092", "--timeout", "1"]
        wait_until(lambda: subprocess.run(probe, capture_output=True).returncode == 0, 90, interval=0.5)


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
