"""Helpers of the Kafka tests: a relay process, appends only the stream carries, reading a topic, the
order check, and a broker restart."""

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
from confluent_kafka import Consumer

from sentinai.eventstore import store
from sentinai.kernel import kafka
from sentinai.models import StreamOutbox
from sentinai.tenancy.scope import all_tenants_scope, tenant_scope
from tests.support.factories import wait_until
from tests.support.workers import ROOT, service_env


class Relay:
    """`manage.py relay_event_stream` as a child process on the test database."""

    def __init__(self, tmp_path, template: str, name: str = "relay", **env):
        self.log_path = tmp_path / f"{name}.log"
        self.env = service_env(platform=True, SENTINAI_KAFKA_TOPIC_TEMPLATE=template, **env)
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


def topic_reader(topic: str) -> Consumer:
    """A consumer of the whole topic from its start, in a group of its own, committing nothing."""
    consumer = Consumer(
        kafka.client_config(
            **{
                "group.id": f"test-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                # A topic created after this subscribes is noticed within a second.
                "topic.metadata.refresh.interval.ms": 1000,
            }
        )
    )
    consumer.subscribe([topic])
    return consumer


def read_topic(topic: str, expected_ids: set[str], timeout: float = 120.0) -> list:
    """Every message of the topic from the start until each expected event id was seen."""
    consumer = topic_reader(topic)
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
        broker = subprocess.Popen(cmdline, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        # scripts/services.sh (and services-stop) know the broker by its pid file: keep it true.
        properties = Path(cmdline[-1].decode())
        pid_file = properties.parent.parent / "run" / "kafka.pid"
        if pid_file.exists():
            pid_file.write_text(f"{broker.pid}\n")
        probe = [sys.executable, str(ROOT / "scripts" / "kafka_probe.py"), "127.0.0.1:9092", "--timeout", "1"]
        wait_until(lambda: subprocess.run(probe, capture_output=True).returncode == 0, 90, interval=0.5)
