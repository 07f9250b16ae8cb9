#!/usr/bin/env python
"""A quiet tenant's latency behind a noisy tenant's backlog, without lanes and with them.

The real agents and the shipped finance pack on the Procfile's topology: one worker per agent queue
(`-Q <agent>`, i.e. all its lanes) and the scheduler's, real PostgreSQL and RabbitMQ. For each
backlog size N (0, 2,000, 8,000 by default) the noisy tenant reports N settlement failures (1,000
per transaction, through the services behind the batch API: validation, PII redaction, admission
bookkeeping), then the quiet tenant reports one; the figure is that exception's latency from
ExceptionIngested to ExceptionResolved as the event store recorded them. The backlog drains before the
next size.

Two configurations:
- before: SENTINAI_LANES=1 and one slot per agent worker (`-c 1`, the Procfile before lanes): every
  agent has one FIFO queue shared by all tenants;
- after: SENTINAI_LANES=4 and two slots per agent worker (`-c 2`, today's Procfile), the tenants on
  different lanes.

    python bench/fairness.py [--sizes 0,2000,8000] [--configs before,after]

BENCH_VHOST (sentinai_bench_fairness) and BENCH_REDIS_DB (14) keep it off other runs' broker and cache.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
import zlib
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG = "postgres://{user}@127.0.0.1:5432/{db}"
DB = "sentinai_bench_fairness"
VHOST = os.environ.get("BENCH_VHOST", "sentinai_bench_fairness")
REDIS_DB = os.environ.get("BENCH_REDIS_DB", "14")
AGENTS = ["intake", "triage", "policy", "playbook", "tool", "resolution", "feedback", "sla", "scheduler"]
CONFIGS = {"before": {"lanes": 1, "slots": 1}, "after": {"lanes": 4, "slots": 2}}


def environment(lanes: int) -> dict:
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": PG.format(user="sentinai_app", db=DB),
        "DATABASE_OWNER_URL": PG.format(user="sentinai", db=DB),
        "CELERY_BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{VHOST}",
        "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "KAFKA_BOOTSTRAP_SERVERS": "",
        "SENTINAI_LANES": str(lanes),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    return dict(os.environ)


def prepare(env: dict) -> None:
    import psycopg

    with psycopg.connect(PG.format(user="sentinai", db="postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    vhosts = subprocess.run(["rabbitmqctl", "-q", "list_vhosts"], capture_output=True, text=True, check=True).stdout
    if VHOST not in vhosts.split():
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", VHOST], check=True)
        subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*"], check=True)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)


def start_workers(slots: int, env: dict, log_dir: Path) -> list[subprocess.Popen]:
    procs = []
    for queue in AGENTS:
        pool, concurrency = ("threads", 4) if queue == "tool" else ("prefork", slots)
        log = (log_dir / f"worker-{queue}.log").open("w")
        cmd = [
            sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queue, "-n", f"fair-{queue}@%h",
            "-P", pool, "-c", str(concurrency), "--without-mingle", "--without-gossip", "-l", "WARNING",
        ]  # fmt: skip
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
    time.sleep(10)
    if any(proc.poll() is not None for proc in procs):
        raise SystemExit(f"a worker exited at start; see {log_dir}")
    return procs


def report(tenant, count: int) -> list[str]:
    from exceptions_app import services
    from exceptions_app.serializers import IngestSerializer
    from sentinai.packs.rules import pii_rules_for
    from sentinai.tenancy import admission

    rules = pii_rules_for(tenant)
    items = []
    for _ in range(count):
        raw = {
            "source_system": "settlement-engine",
            "exception_type": "SETTLEMENT_FAILURE",
            "payload": {
                "trade_id": f"T-{uuid.uuid4().hex[:8]}",
                "amount": 50_000,
                "currency": "EUR",
                "counterparty": "BANK OF EXAMPLE",
                "reason": "insufficient securities",
            },
        }
        serializer = IngestSerializer(data=raw)
        serializer.is_valid(raise_exception=True)
        items.append(services.exception_from_report(serializer.validated_data, rules))
    ids = []
    for start in range(0, count, 1000):
        chunk = items[start : start + 1000]
        if admission.admit(tenant, len(chunk)):
            raise SystemExit(f"{tenant.id} refused by admission control")
        ingested = services.exceptions_ingest_admitted(tenant_id=tenant.id, items=chunk)
        ids += [i.exception_id for i in ingested]
    return ids


def open_count(tenant_id: str) -> int:
    from exceptions_app.models import ExceptionRecord
    from sentinai.tenancy.scope import all_tenants_scope

    with all_tenants_scope():
        return ExceptionRecord.objects.filter(tenant_id=tenant_id).exclude(status__in=TERMINAL).count()


TERMINAL = ("resolved", "escalated", "invalid")


def latency(tenant, timeout: float = 600) -> float:
    from exceptions_app.models import ExceptionRecord
    from sentinai.models import ExceptionEvent
    from sentinai.tenancy.scope import all_tenants_scope

    (exception_id,) = report(tenant, 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with all_tenants_scope():
            if ExceptionRecord.objects.filter(id=exception_id, status__in=TERMINAL).exists():
                times = dict(
                    ExceptionEvent.objects.filter(
                        exception_id=exception_id, event_type__in=("ExceptionIngested", "ExceptionResolved")
                    ).values_list("event_type", "recorded_at")
                )
                return (times["ExceptionResolved"] - times["ExceptionIngested"]).total_seconds()
        time.sleep(0.05)
    raise SystemExit(f"{exception_id} did not finish in {timeout}s")


def run(config: str, sizes: list[int], log_dir: Path) -> dict:
    lanes, slots = CONFIGS[config]["lanes"], CONFIGS[config]["slots"]
    env = environment(lanes)
    prepare(env)
    import django

    django.setup()
    from django.conf import settings

    from sentinai.tenancy import admission
    from sentinai.tenancy.services import tenant_create_or_update

    settings.SENTINAI = {**settings.SENTINAI, "LANES": lanes}
    noisy_id = "noisy"
    quiet_id = next(
        f"quiet-{n}" for n in range(100) if zlib.crc32(f"quiet-{n}".encode()) % 4 != zlib.crc32(b"noisy") % 4
    )
    tenants = {}
    for tenant_id in (noisy_id, quiet_id):
        tenants[tenant_id], _ = tenant_create_or_update(
            tenant_id=tenant_id, domain_pack="finance", rate_per_second=10_000, burst=20_000, max_in_flight=1_000_000
        )
        admission.backend().reset(tenant_id)
    workers = start_workers(slots, env, log_dir / config)
    figures = {}
    try:
        latency(tenants[quiet_id])  # warm-up
        for size in sizes:
            started = time.monotonic()
            if size:
                report(tenants[noisy_id], size)
            figures[size] = {
                "quiet_latency_s": round(latency(tenants[quiet_id]), 3),
                "noisy_open": open_count(noisy_id),
            }
            while open_count(noisy_id):
                time.sleep(1)
            drained = time.monotonic() - started
            figures[size]["drained_s"] = round(drained, 1)
            print(f"{config}: behind {size:,} noisy exceptions the quiet one took {figures[size]}", flush=True)
    finally:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    return {"lanes": lanes, "slots": slots, "figures": figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="0,2000,8000")
    parser.add_argument("--configs", default="before,after")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    log_dir = ROOT / "bench" / "results" / f"fairness-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    results = {}
    for config in args.configs.split(","):
        (log_dir / config).mkdir(parents=True, exist_ok=True)
        # Each configuration in its own process: Django and Celery read SENTINAI_LANES once.
        if len(args.configs.split(",")) > 1:
            out = subprocess.run(
                [sys.executable, __file__, "--sizes", args.sizes, "--configs", config],
                cwd=ROOT,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            print(out, end="", flush=True)
            results[config] = json.loads(out.rsplit("RESULT ", 1)[1])[config]
        else:
            results[config] = run(config, sizes, log_dir)
    (log_dir / "result.json").write_text(json.dumps(results, indent=2))
    print("RESULT " + json.dumps(results))


if __name__ == "__main__":
    main()
