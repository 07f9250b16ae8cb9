#!/usr/bin/env python
"""The Kafka event stream relay's own throughput: how fast `relay_event_stream` drains a backlog.

Appends --events events (SLAImminent, which no agent consumes, so only the stream carries them) for
--exceptions exceptions of one tenant through the event store's append, 500 per transaction, with the
relays stopped; then starts --relays relay processes and times the drain of stream_outbox to Kafka
(every event acknowledged by the local broker). Real PostgreSQL and Kafka on this machine; no agent
runs. Prints the append rate and the relay's events/s and the CPU it took per event (from /proc: the relay processes, the bench
database's PostgreSQL backends, the Kafka broker), writes JSON under bench/results/, and ends with
the line `stream_events_per_s=<integer>`. `--profile` drains in this process instead, one relay under
cProfile, and prints where its time goes (a profiled figure, slower than the real one).

    python bench/stream.py [--events 200000] [--exceptions 20000] [--relays 1] [--db NAME] [--profile]
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


def process_cpu(db: str, own: set[int]) -> dict[tuple[str, int], float]:
    """CPU seconds used so far per (component, pid): the relays (`own`), the bench database's
    PostgreSQL backends (their process title names the database) and the Kafka broker (java)."""
    from bench.procstat import processes

    used: dict[tuple[str, int], float] = {}
    for proc in processes():
        if proc.pid in own:
            used[("relay", proc.pid)] = proc.cpu_seconds
        elif proc.is_postgres_backend_of(db):
            used[("postgres", proc.pid)] = proc.cpu_seconds
        elif "java" in proc.comm and "kafka" in proc.cmdline:
            used[("kafka", proc.pid)] = proc.cpu_seconds
    return used


def cpu_delta(before: dict, after: dict) -> dict[str, float]:
    used = dict.fromkeys(("relay", "postgres", "kafka"), 0.0)
    for (group, pid), seconds in after.items():
        used[group] += seconds - before.get((group, pid), 0.0)
    return used


def load_average() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def profile_drain(limit: int) -> tuple[float, str]:
    """Drain the stream outbox in this process under cProfile; returns (seconds, report)."""
    import cProfile
    import io
    import pstats

    from sentinai.eventstore import stream
    from sentinai.models import StreamOutbox
    from sentinai.tenancy.scope import all_tenants_scope

    producer, topics = stream.new_producer(), stream.Topics()
    stream.relay_round(producer, topics, limit=1)  # connect and learn the topic outside the profile
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    while True:
        stream.relay_round(producer, topics, limit=limit)
        with all_tenants_scope():
            if not StreamOutbox.objects.exists():
                break
    profiler.disable()
    seconds = time.perf_counter() - started
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats("tottime")
    stats.print_stats(25)
    stats.sort_stats("cumulative").print_stats(30)
    return seconds, out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--exceptions", type=int, default=20_000)
    parser.add_argument("--relays", type=int, default=1)
    parser.add_argument("--db", default="sentinai_bench_stream", help="database (dropped and created)")
    parser.add_argument("--profile", action="store_true", help="one relay in this process, under cProfile")
    args = parser.parse_args()
    db = args.db

    run = uuid.uuid4().hex[:8]
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": PG.format(user="sentinai_app", db=db),
        "DATABASE_OWNER_URL": PG.format(user="sentinai", db=db),
        "CELERY_BROKER_URL": "memory://localhost/",
        "KAFKA_BOOTSTRAP_SERVERS": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        "SENTINAI_KAFKA_TOPIC_TEMPLATE": f"bench.{run}.{{tenant}}",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    import psycopg

    with psycopg.connect(PG.format(user="sentinai", db="postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {db}")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, check=True)
    # The relay works across tenants, which only the platform role may (docs/security.md); so do this
    # script's probes. Neither holds the schema owner's credentials.
    os.environ["DATABASE_URL"] = PG.format(user="sentinai_platform", db=db)
    os.environ.pop("DATABASE_OWNER_URL")

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
    if args.profile:
        from django.conf import settings

        load = load_average()
        seconds, report = profile_drain(settings.SENTINAI["KAFKA_RELAY_BATCH"])
        (log_dir / f"stream-profile-{datetime.now(UTC):%Y%m%dT%H%M%S}.txt").write_text(report)
        print(report)
        print(f"profiled drain: {args.events} events in {seconds:.2f} s = {args.events / seconds:,.0f} events/s")
        print(f"(under cProfile, not the relay's rate); load average {load}")
        return
    load_before = load_average()
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
    own = {r.pid for r in relays}
    logs = [log_dir / f"stream-relay-{n}.log" for n in range(args.relays)]
    try:
        # The relays print their first line before their first round: from then on, time and CPU are
        # the relaying's, not Python's and Django's start-up.
        while not all("relaying" in log.read_text() for log in logs):
            if any(r.poll() is not None for r in relays):
                raise SystemExit(f"a relay exited; see {log_dir}")
            time.sleep(0.01)
        ready = time.perf_counter()
        cpu_before = process_cpu(db, own)
        while True:
            with all_tenants_scope():
                if not StreamOutbox.objects.exists():
                    break
            if any(r.poll() is not None for r in relays):
                raise SystemExit(f"a relay exited; see {log_dir}")
            time.sleep(0.05)
        done = time.perf_counter()
        cpu = cpu_delta(cpu_before, process_cpu(db, own))
        load_after = load_average()
        drain_seconds, relay_seconds = done - started, done - ready
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
        "relay_seconds": round(relay_seconds, 2),
        "relay_events_per_s": round(args.events / relay_seconds),
        "cpu_us_per_event": {k: round(v * 1e6 / args.events, 1) for k, v in cpu.items()},
        "load_average_before_after": [load_before, load_after],
        "note": (
            "drain_seconds includes the relays' start-up (Python + Django + librdkafka, ~1-2 s); "
            "relay_seconds and the CPU figures start when every relay began its rounds"
        ),
    }
    (log_dir / f"stream-{datetime.now(UTC):%Y%m%dT%H%M%S}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"stream_events_per_s={result['stream_events_per_s']}")


if __name__ == "__main__":
    main()
