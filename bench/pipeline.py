#!/usr/bin/env python
"""The consumer framework's throughput with pass-through agents (a stub figure, not the product's):
all seven agent queues, real PostgreSQL and RabbitMQ, but no triage, policy, playbook or tool work.
The product's figure - the real agents behind the HTTP API - needs the harness of the performance
issue; until then this script refuses to run without --pass-through, so no one quotes it as the
product's.

Each benchmark exception is appended (in bulk, 500 per transaction, as ExceptionIngested) and then
crosses eight agent hops (bench/passthrough.py), every hop a real consumer-framework batch: idempotency
insert, exception row locks and ordering gate, bulk event append, outbox, broker message, commit.

The producer keeps at most --window exceptions in flight (appended, not yet through the last hop), so
the figure is a sustained rate with a bounded backlog, not the drain speed of a queue filled in advance.

Prints events/min (events applied by agents), end-to-end latency (ExceptionIngested recorded ->
FeedbackCaptured recorded) p50/p99, machine CPU per event, writes JSON under bench/results/, and ends
with the line `events_per_min=<integer>`.

    python bench/pipeline.py --pass-through [--exceptions 60000] [--workers 2] [--window 20000] [--lanes 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG = "postgres://{user}@127.0.0.1:5432/{db}"
DB = "sentinai_bench"
VHOST = "sentinai_bench"
QUEUES = ["intake", "triage", "policy", "playbook", "tool", "resolution", "feedback"]


def configure_environment(batch_size: int, lanes: int) -> dict:
    from bench.passthrough import IMPLEMENTATIONS

    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": PG.format(user="sentinai_app", db=DB),
        "DATABASE_OWNER_URL": PG.format(user="sentinai", db=DB),
        "CELERY_BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{VHOST}",
        "REDIS_URL": "redis://127.0.0.1:6379/14",
        "SENTINAI_AGENT_IMPLEMENTATIONS": json.dumps(IMPLEMENTATIONS),
        "SENTINAI_BATCH_SIZE": str(batch_size),
        "SENTINAI_LANES": str(lanes),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    return dict(os.environ)


def prepare_services(env: dict) -> None:
    import psycopg

    # A fresh database every run: results do not depend on what earlier runs left behind.
    with psycopg.connect(PG.format(user="sentinai", db="postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    vhosts = subprocess.run(["rabbitmqctl", "-q", "list_vhosts"], capture_output=True, text=True, check=True).stdout
    if VHOST not in vhosts.split():
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", VHOST], check=True)
        subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*"], check=True)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "--no-table-headers", "-p", VHOST, "list_queues", "name"], capture_output=True, text=True
    ).stdout
    for queue in listed.split():  # every lane of every agent (and lanes of earlier runs' settings)
        if queue.split(".", 1)[0] in QUEUES:
            subprocess.run(["rabbitmqctl", "-q", "-p", VHOST, "purge_queue", queue], capture_output=True)


def start_workers(count: int, pool: str, concurrency: int, env: dict, log_dir: Path) -> list[subprocess.Popen]:
    procs = []
    for n in range(count):
        log = (log_dir / f"worker-{n}.log").open("w")
        cmd = [
            sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", ",".join(QUEUES),
            "-n", f"bench{n}@%h", "-P", pool, "-c", str(concurrency),
            "--without-mingle", "--without-gossip", "--without-heartbeat", "-l", "WARNING",
        ]  # fmt: skip
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
    time.sleep(6)
    for proc in procs:
        if proc.poll() is not None:
            raise SystemExit(f"a worker exited at start; see {log_dir}")
    return procs


def process_cpu() -> dict[str, float]:
    """CPU seconds used so far by each component on this machine (all its processes)."""
    groups = {"postgres": 0.0, "rabbitmq": 0.0, "workers": 0.0, "producer": 0.0}
    tick = os.sysconf("SC_CLK_TCK")
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        used = (int(fields[11]) + int(fields[12])) / tick
        if int(entry.name) == me:
            groups["producer"] += used
        elif "postgres" in stat.split("(", 1)[1].split(")")[0] or cmdline.startswith("postgres"):
            groups["postgres"] += used
        elif "beam.smp" in stat:
            groups["rabbitmq"] += used
        elif "celery" in cmdline and "bench" in cmdline:
            groups["workers"] += used
    return groups


def cpu_busy() -> tuple[float, float]:
    fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pass-through",
        action="store_true",
        help="run the stub agents of bench/passthrough.py (required: the only mode this harness has)",
    )
    parser.add_argument("--exceptions", type=int, default=60_000, help="exceptions in the throughput phase")
    parser.add_argument("--chunk", type=int, default=500, help="exceptions appended per transaction")
    parser.add_argument("--window", type=int, default=10_000, help="max exceptions in flight")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--pool", default="threads", help="Celery pool of each worker process")
    parser.add_argument("--concurrency", type=int, default=2, help="threads (or children) per worker process")
    parser.add_argument("--batch-size", type=int, default=500, help="events per broker message")
    parser.add_argument("--tenants", type=int, default=1)
    parser.add_argument("--lanes", type=int, default=4, help="SENTINAI_LANES: shared lanes per agent (1 = no lanes)")
    parser.add_argument("--latency-seconds", type=float, default=20, help="0 skips the latency phase")
    parser.add_argument("--latency-load", type=float, default=0.3, help="share of the measured throughput")
    parser.add_argument("--latency-chunk", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    if not args.pass_through:
        parser.error("only the framework with pass-through agents can be measured here: pass --pass-through")

    env = configure_environment(args.batch_size, args.lanes)
    prepare_services(env)

    import django

    django.setup()
    from sentinai.tenancy.services import tenant_create_or_update

    tenants = [f"bench-{n}" for n in range(args.tenants)]
    for tenant_id in tenants:
        tenant_create_or_update(tenant_id=tenant_id, domain_pack="finance")

    log_dir = ROOT / "bench" / "results" / f"pipeline-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    log_dir.mkdir(parents=True, exist_ok=True)
    workers = start_workers(args.workers, args.pool, args.concurrency, env, log_dir)
    try:
        result = Run(args, tenants).execute()
    finally:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    result["postgres_settings"] = postgres_settings()
    (log_dir / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    latency = result.get("latency") or {}
    print(
        f"throughput: {result['events_processed']:,} events applied by agents in {result['elapsed_s']}s "
        f"({result['exceptions']:,} exceptions x {result['hops_per_exception']} hops), "
        f"{result['events_per_min']:,}/min overall, {result['steady_events_per_min'] or 0:,}/min steady, "
        f"{result['machine_cpu_us_per_event']} us machine CPU/event"
    )
    if latency:
        print(
            f"latency at {latency['events_per_min']:,} events/min ({latency['load']:.0%} load): end-to-end "
            f"p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms over {latency['exceptions']:,} exceptions"
        )
    print("framework with pass-through agents (stub figure, not the product's):")
    print(f"events_per_min={result['events_per_min']}")


def postgres_settings() -> dict:
    from django.db import connection

    names = ["shared_buffers", "max_wal_size", "checkpoint_timeout", "wal_compression", "synchronous_commit"]
    settings = {}
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute(f"SHOW {name}")
            settings[name] = cursor.fetchone()[0]
    return settings


class Run:
    PAYLOAD = {
        "trade_id": "T-0000001",
        "amount": 250000.0,
        "currency": "EUR",
        "counterparty": "BANK OF EXAMPLE",
        "reason": "insufficient securities in the delivering account",
    }

    def __init__(self, args, tenants):
        from bench.passthrough import HOPS_PER_EXCEPTION

        self.args = args
        self.tenants = tenants
        self.hops = HOPS_PER_EXCEPTION
        self.appended = 0
        self.n = 0

    # --- database probes -----------------------------------------------------------------
    def _scalar(self, sql, params=()):
        from django.db import connection

        from sentinai.tenancy.scope import all_tenants_scope

        with all_tenants_scope(), connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()[0]

    def finished_count(self) -> int:
        """Exceptions through the last hop (exact; scans processed_event, so not used in the hot loop)."""
        return self._scalar("SELECT count(*) FROM processed_event WHERE consumer = 'feedback'")

    def finished_estimate(self) -> int:
        """Exceptions through the pipeline from the table statistics: free, but idle backends report up
        to 10 s late, so it only paces the producer."""
        return self._scalar("SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'processed_event'") // self.hops

    # --- producer ------------------------------------------------------------------------
    def append(self, size: int, source: str) -> None:
        from exceptions_app.services import NewException, exceptions_ingest
        from sentinai.tenancy.scope import tenant_scope

        tenant_id = self.tenants[self.n % len(self.tenants)]
        self.n += 1
        event_payload = {"source_system": source, "payload": self.PAYLOAD}
        with tenant_scope(tenant_id):
            exceptions_ingest(
                tenant_id=tenant_id,
                items=[
                    NewException(source_system=source, payload=self.PAYLOAD, event_payload=event_payload)
                    for _ in range(size)
                ],
            )
        self.appended += size

    def wait_all(self, deadline: float, samples: list, started: float) -> int:
        finished = 0
        while finished < self.appended and time.monotonic() < deadline:
            time.sleep(0.25)
            finished = self.finished_count()
            samples.append((time.monotonic() - started, finished))
        return finished

    # --- phases --------------------------------------------------------------------------
    def throughput(self) -> dict:
        args = self.args
        samples: list[tuple[float, int]] = []
        busy0, total0 = cpu_busy()
        components0 = process_cpu()
        started = time.monotonic()
        deadline = started + args.timeout
        finished = 0
        while self.appended < args.exceptions and time.monotonic() < deadline:
            if self.appended - finished >= args.window:
                time.sleep(0.1)
                finished = self.finished_estimate()
                samples.append((time.monotonic() - started, finished))
                continue
            self.append(min(args.chunk, args.exceptions - self.appended), "bench")
        produced = time.monotonic() - started
        finished = self.wait_all(deadline, samples, started)
        elapsed = time.monotonic() - started
        busy1, total1 = cpu_busy()
        components1 = process_cpu()
        processed = self._scalar("SELECT count(*) FROM processed_event")
        # Sustained rate: completions between 10% and 90% of the run (no warm-up, no drain tail).
        lo, hi = int(self.appended * 0.1), int(self.appended * 0.9)
        t_lo = next((t for t, f in samples if f >= lo), None)
        t_hi = next((t for t, f in samples if f >= hi), None)
        steady = (hi - lo) * self.hops / (t_hi - t_lo) * 60 if t_lo is not None and t_hi and t_hi > t_lo else None
        cpu_seconds = (busy1 - busy0) / os.sysconf("SC_CLK_TCK")
        return {
            "exceptions": self.appended,
            "completed": finished,
            "hops_per_exception": self.hops,
            "events_processed": processed,
            "events_stored": self._scalar("SELECT count(*) FROM exception_event"),
            "elapsed_s": round(elapsed, 2),
            "producer_done_s": round(produced, 2),
            "events_per_min": int(processed / elapsed * 60),
            "steady_events_per_min": int(steady) if steady else None,
            "machine_cpu_utilisation": round((busy1 - busy0) / (total1 - total0), 3),
            "machine_cpu_us_per_event": round(cpu_seconds / max(processed, 1) * 1e6, 1),
            "cpu_us_per_event_by_component": {
                name: round((components1[name] - components0[name]) / max(processed, 1) * 1e6, 1)
                for name in components0
            },
            "outbox_rows_left": self._scalar("SELECT count(*) FROM outbox"),
        }

    def latency(self, events_per_min: int) -> dict:
        """Open loop: exceptions arrive at a fixed share of the measured throughput, in small chunks;
        end-to-end latency is ExceptionIngested recorded -> FeedbackCaptured recorded."""
        args = self.args
        rate = events_per_min / 60 / self.hops * args.latency_load  # exceptions per second
        interval = args.latency_chunk / rate
        before = self.appended
        started = time.monotonic()
        next_at = started
        while time.monotonic() - started < args.latency_seconds:
            self.append(args.latency_chunk, "bench-latency")
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        self.wait_all(time.monotonic() + args.timeout, [], started)
        rows = self._latencies("bench-latency")
        return {
            "load": args.latency_load,
            "events_per_min": int(rate * self.hops * 60),
            "exceptions": self.appended - before,
            "chunk": args.latency_chunk,
            "p50_ms": round(statistics.median(rows), 1) if rows else None,
            "p99_ms": round(rows[max(0, int(len(rows) * 0.99) - 1)], 1) if rows else None,
            "max_ms": round(rows[-1], 1) if rows else None,
        }

    def _latencies(self, source: str) -> list[float]:
        from django.db import connection

        from sentinai.tenancy.scope import all_tenants_scope

        with all_tenants_scope(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT extract(epoch FROM f.recorded_at - i.recorded_at) * 1000 FROM exception_event i "
                "JOIN exception x ON x.id = i.exception_id AND x.source_system = %s "
                "JOIN exception_event f ON f.exception_id = i.exception_id AND f.event_type = 'FeedbackCaptured' "
                "WHERE i.event_type = 'ExceptionIngested'",
                [source],
            )
            return sorted(float(r[0]) for r in cursor.fetchall())

    def execute(self) -> dict:
        result = {"benchmark": "pipeline", "when": datetime.now(UTC).isoformat(), **self.throughput()}
        if self.args.latency_seconds > 0:
            result["latency"] = self.latency(result["events_per_min"])
        result["config"] = vars(self.args)
        return result


if __name__ == "__main__":
    main()
