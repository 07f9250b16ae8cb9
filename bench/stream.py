#!/usr/bin/env python
"""The Kafka event stream relay's own throughput: how fast `relay_event_stream` drains a backlog.

Appends --events events (SLAImminent, which no agent consumes, so only the stream carries them) for
--exceptions exceptions of one tenant through the event store's append, 500 per transaction, with the
relays stopped; then starts --relays relay processes and times the drain of stream_outbox to Kafka
(every event acknowledged by the local broker). Real PostgreSQL and Kafka on this machine; no agent
runs. Prints the append rate and the relay's events/s, writes JSON under bench/results/, and ends with
the line `stream_events_per_s=<integer>`.

    python bench/stream.py [--events 200000] [--exceptions 20000] [--relays 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG = "postgres://{user}@127.0.0.1:5432/{db}"
DB = "sentinai_bench_stream"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--exceptions", type=int, default=20_000)
    parser.add_argument("--relays", type=int, default=1)
    args = parser.parse_args()

    run = uuid.uuid4().hex[:8]
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": PG.format(user="sentinai_app", db=DB),
        "DATABASE_OWNER_URL": PG.format(user="sentinai", db=DB),
        "CELERY_BROKER_URL": "memory://localhost/",
        "KAFKA_BOOTSTRAP_SERVERS": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        "SENTINAI_KAFKA_TOPIC_TEMPLATE": f"bench.{run}.{{tenant}}",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    import psycopg

    with psycopg.connect(PG.format(user="sentinai", db="postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, check=True)

    import django

    django.setup()
    from exceptions_app.models import ExceptionRecord
    from sentinai.eventstore import store
    from sentinai.models import StreamOutbox, Tenant
    from sentinai.tenancy.scope import all_tenants_scope, tenant_scope

    tenant = Tenant.objects.create(id="bench-stream", name="bench-stream", domain_pack="finance")
    ids = [str(uuid.uuid4()) for _ in range(args.exceptions)]
    with tenant_scope(tenant.id):
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            ExceptionRecord.objects.bulk_create(
                [ExceptionRecord(id=i, tenant_id=tenant.id, source_system="bench", payload={}) for i in chunk]
            )
            store.open_streams(tenant.id, chunk)
    payload = {"severity": "high", "sla_due_at": "2030-01-01T00:00:00Z", "fraction": 0.8}
    started = time.perf_counter()
    appended = 0
    while appended < args.events:
        chunk = [ids[(appended + k) % len(ids)] for k in range(min(500, args.events - appended))]
        with tenant_scope(tenant.id):
            store.append(
                tenant_id=tenant.id,
                producer="sla",
                events=[store.NewEvent(i, "SLAImminent", payload) for i in chunk],
            )
        appended += len(chunk)
    append_seconds = time.perf_counter() - started

    log_dir = ROOT / "bench" / "results"
    log_dir.mkdir(parents=True, exist_ok=True)
    relays = [
        subprocess.Popen(
            [sys.executable, "manage.py", "relay_event_stream", "--idle", "0.05"],
            cwd=ROOT,
            stdout=(log_dir / f"stream-relay-{n}.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        for n in range(args.relays)
    ]
    started = time.perf_counter()
    try:
        while True:
            with all_tenants_scope():
                if not StreamOutbox.objects.exists():
                    break
            if any(r.poll() is not None for r in relays):
                raise SystemExit(f"a relay exited; see {log_dir}")
            time.sleep(0.1)
        drain_seconds = time.perf_counter() - started
    finally:
        for relay in relays:
            relay.terminate()
            relay.wait(30)

    result = {
        "benchmark": "stream",
        "at": datetime.now(UTC).isoformat(),
        "events": args.events,
        "exceptions": args.exceptions,
        "relays": args.relays,
        "append_events_per_s": round(args.events / append_seconds),
        "drain_seconds": round(drain_seconds, 2),
        "stream_events_per_s": round(args.events / drain_seconds),
        "note": "relay start-up (Python + Django + librdkafka, ~1-2 s) is inside drain_seconds",
    }
    (log_dir / f"stream-{datetime.now(UTC):%Y%m%dT%H%M%S}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"stream_events_per_s={result['stream_events_per_s']}")


if __name__ == "__main__":
    main()
