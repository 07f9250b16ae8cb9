"""Kafka ingest against the local broker: `consume_kafka_ingest` takes exceptions in from a topic as POST
/api/exceptions/{tenant} would (validation, redaction, de-duplication, admission), commits offsets only
after the rows committed, copies invalid messages to `<topic>.rejected`, and pauses a partition its
tenant's limits refuse until they admit it again, losing nothing."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import orjson
import pytest

from exceptions_app.models import ExceptionRecord
from sentinai.models import ExceptionEvent, Tenant
from sentinai.tenancy import admission
from sentinai.tenancy.scope import tenant_scope
from sentinai.tenancy.services import tenant_create_or_update
from tests.support.factories import wait_until
from tests.support.kafka_ingest import Ingest, committed, create_topic, produce, read_all
from tests.support.scenarios import settlement
from tests.support.workers import ROOT

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def new_tenant(prefix: str, **limits) -> str:
    tenant_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
    tenant_create_or_update(
        tenant_id=tenant_id,
        domain_pack="finance",
        **{"rate_per_second": 1000, "burst": 2000, "max_in_flight": 100_000, **limits},
    )
    admission.backend().reset(tenant_id)
    return tenant_id


def report(source_ref: str | None = None, **fields) -> dict:
    body = {"source_system": "settlement-engine", "exception_type": "SETTLEMENT_FAILURE", "payload": settlement(1_000)}
    if source_ref is not None:
        body["source_ref"] = source_ref
    return {**body, **fields}


def stored(tenant_id: str) -> list[dict]:
    with tenant_scope(tenant_id):
        return list(
            ExceptionRecord.objects.filter(tenant_id=tenant_id).values("id", "source_ref", "idempotency_key", "payload")
        )


def ingested_events(tenant_id: str) -> list[ExceptionEvent]:
    with tenant_scope(tenant_id):
        return list(ExceptionEvent.objects.filter(tenant_id=tenant_id, event_type="ExceptionIngested"))


def test_a_valid_message_is_stored_redacted_with_its_event_and_its_offset_committed(tmp_path):
    tenant_id = new_tenant("kin-ok")
    topic = create_topic()
    body = report("S-1", payload=settlement(1_000, note="call jane.doe@example.com"))
    with Ingest(tmp_path, {topic: tenant_id}) as ingest:
        produce(topic, [(body, [("traceparent", b"00-abc-01")])])
        wait_until(lambda: committed(ingest.group, topic) == 1, 60, message="the offset to be committed")
        assert ingest.stop() == 0
    assert "stopped" in ingest.log()
    (row,) = stored(tenant_id)
    assert row["source_ref"] == "S-1" and row["idempotency_key"] is None
    assert row["payload"]["note"] == "call j***@example.com"  # redacted before it was stored
    (event,) = ingested_events(tenant_id)
    assert str(event.exception_id) == str(row["id"]) and event.producer == "api"
    assert event.payload["source_ref"] == "S-1" and "jane.doe" not in orjson.dumps(event.payload).decode()
    assert read_all(f"{topic}.rejected", 0, timeout=1, settle=1) == []


INVALID = [
    (b"{not json", "not-json:"),
    ([1, 2, 3], "invalid: the value must be a JSON object"),
    ({"source_system": 123, "payload": {}}, 'invalid: {"source_system"'),
    ({"source_system": "erp", "payload": {}, "colour": "red"}, 'invalid: {"colour":["Unknown field."]}'),
    (report(payload={"blob": "x" * 300_000}), 'invalid: {"payload":["Must be at most 256 KiB."]}'),
    (b"[" + b" " * 600_000 + b"]", "oversized: 600002 bytes"),
]


def test_invalid_messages_go_to_the_rejected_topic_with_their_reason_and_nothing_is_stored(tmp_path):
    tenant_id = new_tenant("kin-bad")
    topic = create_topic()
    messages = [(value, [("origin", f"m{i}".encode())]) for i, (value, _) in enumerate(INVALID)]
    messages.append((report("BAD-KEY"), [("Idempotency-Key", b"k" * 201)]))
    messages.append((report("AFTER"), []))
    with Ingest(tmp_path, {topic: tenant_id}) as ingest:
        produce(topic, messages)
        wait_until(lambda: committed(ingest.group, topic) == len(messages), 60, message="every offset committed")
        rejected = read_all(f"{topic}.rejected", len(INVALID) + 1)
    # In the order of the source's offsets (the rejected topic has partitions of its own).
    rejected.sort(key=lambda m: int(dict(m.headers())["rejected_from"].decode().rsplit("/", 1)[1]))
    assert len(rejected) == len(INVALID) + 1, [dict(m.headers()).get("rejected_reason") for m in rejected]
    for i, (message, (value, reason)) in enumerate(zip(rejected, INVALID, strict=False)):
        headers = dict(message.headers())
        assert headers["rejected_reason"].decode().startswith(reason), headers["rejected_reason"]
        assert headers["origin"] == f"m{i}".encode()  # the original headers travel with it
        assert headers["rejected_from"].decode() == f"{topic}/0/{i}"
        assert message.value() == (orjson.dumps(value) if isinstance(value, dict | list) else value)
    last = dict(rejected[-1].headers())
    assert last["rejected_reason"] == b"invalid: Idempotency-Key header must be 1-200 printable characters"
    assert last["Idempotency-Key"] == b"k" * 201
    assert [r["source_ref"] for r in stored(tenant_id)] == ["AFTER"]  # only the valid message
    assert len(ingested_events(tenant_id)) == 1


def test_a_duplicate_by_source_ref_or_idempotency_key_is_acknowledged_without_a_second_exception(tmp_path):
    tenant_id = new_tenant("kin-dup")
    topic = create_topic()
    with Ingest(tmp_path, {topic: tenant_id}) as ingest:
        produce(topic, [(report("R-1"), []), (report(), [("Idempotency-Key", b"key-1")])])
        wait_until(lambda: committed(ingest.group, topic) == 2, 60)
        # Again, after the first ones are stored (against the rows), and twice in one batch.
        produce(
            topic,
            [
                (report("R-1", payload=settlement(2)), []),
                (report(), [("idempotency-key", b"key-1")]),
                (report("R-2"), []),
                (report("R-2"), []),
            ],
        )
        wait_until(lambda: committed(ingest.group, topic) == 6, 60)
    rows = stored(tenant_id)
    assert sorted(r["source_ref"] or r["idempotency_key"] for r in rows) == ["R-1", "R-2", "key-1"]
    assert len(ingested_events(tenant_id)) == 3
    assert admission.backend().in_flight(tenant_id) == 3  # the duplicates' room was handed back
    assert read_all(f"{topic}.rejected", 0, timeout=1, settle=1) == []


def test_over_the_admission_limit_the_partition_pauses_and_resumes_losing_nothing(tmp_path):
    # A bucket of 3 that refills one token per 1,000 s: exactly 3 are admitted until the limit is raised.
    tenant_id = new_tenant("kin-limit", rate_per_second=0.001, burst=3)
    topic = create_topic()
    refs = [f"L-{i}" for i in range(10)]
    with Ingest(tmp_path, {topic: tenant_id}) as ingest:
        produce(topic, [(report(ref), []) for ref in refs])
        wait_until(lambda: committed(ingest.group, topic) == 3, 60, message="the admitted three committed")
        assert sorted(r["source_ref"] for r in stored(tenant_id)) == refs[:3]
        # Paused: several retry rounds later (each at most 5 s apart) still three, none committed past them.
        time.sleep(6)
        assert len(stored(tenant_id)) == 3 and committed(ingest.group, topic) == 3
        assert ingest.proc.poll() is None, ingest.log()

        Tenant.objects.filter(id=tenant_id).update(rate_per_second=1000, burst=2000)
        wait_until(lambda: committed(ingest.group, topic) == 10, 60, message="the rest once the limit is raised")
    assert sorted(r["source_ref"] for r in stored(tenant_id)) == refs
    assert len(ingested_events(tenant_id)) == 10
    assert read_all(f"{topic}.rejected", 0, timeout=1, settle=1) == []  # refused is not rejected


def test_an_unknown_tenant_in_the_configuration_is_a_clear_error(tmp_path):
    topic = create_topic()
    ingest = Ingest(tmp_path, {topic: "no-such-tenant"})
    done = subprocess.run(
        [sys.executable, "manage.py", "consume_kafka_ingest"], cwd=ROOT, env=ingest.env, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "names tenants that do not exist: no-such-tenant" in done.stderr


def test_a_database_outage_only_delays_the_ingest_and_is_logged_once(tmp_path):
    from django.db import connections

    from tests.support.proxy import TcpProxy

    tenant_id = new_tenant("kin-db")
    topic = create_topic()
    db = connections["default"].settings_dict
    with TcpProxy(int(db["PORT"] or 5432)) as proxy:
        url = f"postgres://{db['USER']}@127.0.0.1:{proxy.port}/{db['NAME']}"
        with Ingest(tmp_path, {topic: tenant_id}, DATABASE_URL=url) as ingest:
            produce(topic, [(report("D-0"), []), (report("D-1"), [])])
            wait_until(lambda: committed(ingest.group, topic) == 2, 60)
            proxy.cut()
            produce(topic, [(report(f"D-{i}"), []) for i in range(2, 6)])
            wait_until(lambda: "database unreachable" in ingest.log(), 30, message="the outage to be noticed")
            time.sleep(3)  # several retries against a database that is not there
            assert committed(ingest.group, topic) == 2 and len(stored(tenant_id)) == 2
            proxy.restore()
            wait_until(lambda: committed(ingest.group, topic) == 6, 60, message="the rest after the outage")
            assert ingest.proc.poll() is None
    assert sorted(r["source_ref"] for r in stored(tenant_id)) == [f"D-{i}" for i in range(6)]
    log = ingest.log()
    assert log.count("database unreachable") == 1 and log.count("database reachable again") == 1, log
