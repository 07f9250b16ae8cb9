"""The Kafka ingest under test: a fresh topic per test on the local broker, `manage.py
consume_kafka_ingest` as a child process on the test database, and reading back what it did."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from sentinai.kernel import kafka
from tests.support.factories import wait_until
from tests.support.kafka import topic_reader
from tests.support.workers import ROOT, service_env


def create_topic(partitions: int = 1) -> str:
    """A new topic of this test only (the broker creates none by itself)."""
    topic = f"test.ingest.{uuid.uuid4().hex[:10]}"
    admin = AdminClient(kafka.client_config())
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(30)
    wait_until(lambda: topic in admin.list_topics(timeout=10).topics, 30, message=f"topic {topic}")
    return topic


def produce(topic: str, messages: list[tuple[bytes | dict | list | None, list[tuple[str, bytes]]]]) -> None:
    """Each (value, headers) in order to partition 0; a dict or list value is sent as JSON."""
    producer = Producer(kafka.client_config(**{"enable.idempotence": True}))
    failures = []
    for value, headers in messages:
        raw = orjson.dumps(value) if isinstance(value, dict | list) else value
        producer.produce(
            topic, value=raw, headers=headers, partition=0, on_delivery=lambda e, _m: e and failures.append(e)
        )
    assert producer.flush(30) == 0 and not failures, failures


def committed(group: str, topic: str, partition: int = 0) -> int:
    """The group's committed offset of the partition (-1001: none)."""
    consumer = Consumer(kafka.client_config(**{"group.id": group, "enable.auto.commit": False}))
    try:
        (tp,) = consumer.committed([TopicPartition(topic, partition)], timeout=10)
        return tp.offset
    finally:
        consumer.close()


def read_all(topic: str, count: int, timeout: float = 60.0, settle: float = 2.0) -> list:
    """`count` messages of the topic from the start, then `settle` seconds more to catch any extra."""
    consumer = topic_reader(topic)
    messages = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                messages.append(message)
        end = time.monotonic() + settle
        while time.monotonic() < end:
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                messages.append(message)
    finally:
        consumer.close()
    return messages


class Ingest:
    """`manage.py consume_kafka_ingest` as a child process on the test database."""

    def __init__(self, tmp_path, topics: dict[str, str], group: str | None = None, name: str = "ingest", **env):
        self.group = group or f"test-ingest-{uuid.uuid4().hex[:8]}"
        self.log_path = tmp_path / f"{name}.log"
        self.env = service_env(
            SENTINAI_KAFKA_INGEST_TOPICS=json.dumps(topics), SENTINAI_KAFKA_INGEST_GROUP=self.group, **env
        )
        self.proc = None

    def __enter__(self) -> Ingest:
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "consume_kafka_ingest"],
            cwd=ROOT, env=self.env, stdout=self.log_path.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_until(lambda: "consuming" in self.log() or self.proc.poll() is not None, 60)
        assert self.proc.poll() is None, self.log()
        return self

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"consume_kafka_ingest did not stop on SIGTERM:\n{self.log()}") from None

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.stop()
