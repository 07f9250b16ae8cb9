"""The Kafka event stream from the embedded default's SQLite database (the relay's non-PostgreSQL path,
which reads the envelopes back instead of having PostgreSQL build them): every recorded event
reaches its tenant's topic, each exception's events in sequence order, and the stream outbox empties."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import orjson

from tests.support.host import ROOT, embedded_env
from tests.support.kafka import assert_in_sequence_per_exception, topic_reader

# In the embedded platform's settings, on its SQLite file: a tenant, 30 exceptions with two events each
# (two appends), one relay round; prints the event ids and what the stream outbox still holds.
_SCRIPT = """
import json, sys
import django
django.setup()
from django.core.management import call_command
from django.db import connection
call_command("migrate", verbosity=0)
from sentinai.models import StreamOutbox
from tests.support.factories import make_exceptions, make_tenant
from tests.support.kafka import append_sla
tenant_id = sys.argv[1]
make_tenant(tenant_id)
ids = make_exceptions(tenant_id, 30)
events = [e.event_id for fraction in (0.5, 0.8) for e in append_sla(tenant_id, ids, fraction)]
owed = StreamOutbox.objects.count()
call_command("relay_event_stream", "--once")
print(json.dumps({"vendor": connection.vendor, "events": events, "owed": owed, "left": StreamOutbox.objects.count()}))
"""


def test_the_embedded_sqlite_relay_streams_every_event_in_order(tmp_path):
    tenant_id = f"lite-{uuid.uuid4().hex[:6]}"
    template = f"test.{uuid.uuid4().hex[:10]}.{{tenant}}"
    env = embedded_env(
        SENTINAI_VAR_DIR=str(tmp_path),
        DJANGO_SETTINGS_MODULE="config.settings.local",
        KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9092",
        SENTINAI_KAFKA_TOPIC_TEMPLATE=template,
    )
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, tenant_id], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["vendor"] == "sqlite"
    assert len(result["events"]) == 60 and result["owed"] > 0 and result["left"] == 0, result
    messages, consumer = [], topic_reader(template.format(tenant=tenant_id))
    deadline = time.monotonic() + 60
    try:
        while len({dict(m.headers())["event_id"] for m in messages}) < 60 and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and not message.error():
                messages.append(message)
    finally:
        consumer.close()
    got = {orjson.loads(m.value())["event_id"] for m in messages}
    assert got == set(result["events"]), f"{len(set(result['events']) - got)} events never reached the topic"
    first = assert_in_sequence_per_exception(messages)
    assert len(first) == 30 and all(seqs == [1, 2] for seqs in first.values()), first
    body = orjson.loads(messages[0].value())
    assert body["tenant_id"] == tenant_id and body["event_type"] == "SLAImminent" and body["recorded_at"]
