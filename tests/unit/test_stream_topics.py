"""The stream relay's topic check (sentinai/eventstore/stream.py, Topics.ensure) when the cluster does not
answer a topic creation in time, as a Kafka 4 broker that has just restarted may not ("coordinator load
in progress"): the round gets a StreamError (its rows wait for the next round) instead of the relay
process dying of a TimeoutError, which CI saw once. The admin client is a stand-in: this is the error
mapping alone; the relay across a real broker restart is tests/integration/test_kafka_stream.py."""

from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace

import pytest

from sentinai.eventstore.stream import StreamError, Topics


class _SilentCluster:
    """Lists no topics and never answers a creation."""

    def __init__(self):
        self.created: list[str] = []

    def list_topics(self, topic, timeout):
        return SimpleNamespace(topics={})

    def create_topics(self, new_topics, operation_timeout):
        self.created += [t.topic for t in new_topics]
        return {t.topic: Future() for t in new_topics}


def test_a_creation_the_cluster_does_not_answer_is_a_stream_error_and_is_asked_again(settings):
    settings.SENTINAI = {**settings.SENTINAI, "KAFKA_CREATE_TOPICS": True}
    topics = Topics.__new__(Topics)
    topics.admin, topics.known = _SilentCluster(), set()
    topics.CREATE_TIMEOUT = 0.2
    for _ in range(2):
        with pytest.raises(StreamError, match="no answer within 0.2 s"):
            topics.ensure("sentinai.events.acme")
    assert topics.admin.created == ["sentinai.events.acme"] * 2  # not cached as known: asked again
    assert "sentinai.events.acme" not in topics.known
