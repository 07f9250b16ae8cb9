"""The local Kafka broker that scripts/services.sh installs and starts (Apache Kafka 4, KRaft) answers the
project's client, confluent-kafka: a smoke test for the event stream built on it, not a feature test.

Keyed messages keep their order within a partition and carry their headers; a consumer group that
commits after reading resumes after the last committed offset."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from django.conf import settings

pytestmark = pytest.mark.integration


def client_config(**extra):
    return {"bootstrap.servers": settings.KAFKA_BOOTSTRAP_SERVERS, **settings.KAFKA_CONFIG, **extra}


@pytest.fixture
def topic():
    admin = AdminClient(client_config())
    name = f"sentinai.smoke.{uuid.uuid4().hex[:12]}"
    futures = admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)], operation_timeout=30)
    futures[name].result(timeout=30)
    yield name
    admin.delete_topics([name], operation_timeout=30)[name].result(timeout=30)


def consume(consumer: Consumer, count: int, timeout: float = 30.0) -> list:
    messages = []
    while len(messages) < count:
        message = consumer.poll(timeout)
        assert message is not None, f"no message within {timeout}s after {len(messages)} of {count}"
        assert message.error() is None or message.error().code() == KafkaError._PARTITION_EOF, message.error()
        if message.error() is None:
            messages.append(message)
    return messages


def test_the_local_broker_is_kafka_4_in_kraft_mode():
    metadata = AdminClient(client_config()).list_topics(timeout=10)
    assert list(metadata.brokers) == [1]
    assert metadata.controller_id == 1  # the broker is its own KRaft controller (combined mode)
    assert metadata.cluster_id


def test_produce_and_consume_keeps_order_per_key_and_headers(topic):
    producer = Producer(client_config(**{"enable.idempotence": True, "linger.ms": 5}))
    delivered = []
    keys = ["exc-a", "exc-b", "exc-c"]
    for i in range(30):
        key = keys[i % 3]
        producer.produce(
            topic, key=key, value=f'{{"seq": {i}}}'.encode(), headers=[("event_id", f"{key}-{i}".encode())],
            on_delivery=lambda err, msg: delivered.append((err, msg.partition(), msg.offset())),
        )  # fmt: skip
    assert producer.flush(30) == 0
    assert len(delivered) == 30 and all(err is None for err, _, _ in delivered)

    consumer = Consumer(client_config(**{"group.id": f"smoke-{uuid.uuid4().hex}", "auto.offset.reset": "earliest",
                                         "enable.auto.commit": False}))  # fmt: skip
    consumer.subscribe([topic])
    try:
        messages = consume(consumer, 30)
    finally:
        consumer.close()
    by_key: dict[str, list[int]] = {}
    partitions: dict[str, set[int]] = {}
    for message in messages:
        key = message.key().decode()
        seq = int(message.value().decode().split(": ")[1].rstrip("}"))
        by_key.setdefault(key, []).append(seq)
        partitions.setdefault(key, set()).add(message.partition())
        assert dict(message.headers()) == {"event_id": f"{key}-{seq}".encode()}
    assert by_key == {key: list(range(n, 30, 3)) for n, key in enumerate(keys)}
    assert all(len(p) == 1 for p in partitions.values()), partitions


def test_a_group_resumes_after_its_committed_offset(topic):
    producer = Producer(client_config())
    for i in range(10):
        producer.produce(topic, key="one-key", value=str(i).encode())
    assert producer.flush(30) == 0
    group = f"smoke-{uuid.uuid4().hex}"
    settings_ = {"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}

    first = Consumer(client_config(**settings_))
    first.subscribe([topic])
    read = consume(first, 4)
    first.commit(message=read[-1], asynchronous=False)
    first.close()

    second = Consumer(client_config(**settings_))
    second.subscribe([topic])
    try:
        rest = consume(second, 6)
    finally:
        second.close()
    assert [m.value() for m in read] == [b"0", b"1", b"2", b"3"]
    assert [m.value() for m in rest] == [str(i).encode() for i in range(4, 10)]
