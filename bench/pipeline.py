#!/usr/bin/env python
"""The pipeline benchmark: the product by default, the consumer framework with --pass-through.

**Product** (`make bench`): the real agents (intake, triage, policy, playbook, tool, resolution,
feedback, and the scheduler with beat) behind the HTTP API. Exceptions are posted in batches to
`POST /api/exceptions/{tenant}/batch`, served by gunicorn (the Procfile's 2 workers x 4 threads) with
the real key authentication, validation, PII redaction and admission control. The mix is the finance
pack's scenarios (SCENARIOS below): mostly auto-resolved settlement failures, some high-severity ones,
rejected payments and feed breaks, and a few critical settlements that stop at the playbook's approval
step, which the bench approves through `POST .../approve` as a desk operator would. The Kafka relay
(`manage.py relay_event_stream`) runs beside it unless --no-stream; the stream's lag (age of the
oldest event not yet acknowledged by Kafka) is sampled throughout; its maximum, p95 and p50 are reported.

Throughput phase: client threads keep at most --window exceptions open (accepted, not closed); the
rates are taken over the whole run and over its steady part (10-90 % of the recorded events).
Latency phases: exceptions arrive 50 per request at 30, 50 and 70 % of the measured exception rate
(open loop); end-to-end latency is ExceptionIngested recorded -> FeedbackCaptured recorded, critical
ones (which wait for a human) left out.

Printed and written to bench/results/pipeline-<time>/result.json: exceptions/min, **recorded
events/min** (rows appended to the event store), agent-applied events/min (one per agent hop), CPU
per agent hop by component (read from /proc per process group: PostgreSQL backends of the bench
database plus PostgreSQL's shared background processes, RabbitMQ, workers, API, client, relay, beat),
the latency percentiles, the stream lag. The last line is `events_per_min=<recorded events/min>`.

**Framework** (`make bench-framework`, --pass-through): pass-through agents (bench/passthrough.py) on
every agent queue, exceptions appended in-process; the framework's own cost, not the product's. Its
last line is `events_per_min=<agent-applied events/min>`, labelled as the framework's.

Each run gets a fresh database, copied from a template migrated once per set of migrations.

    python bench/pipeline.py [--exceptions 30000] [--workers 2] [--no-stream] [--db NAME] [--vhost NAME]
    python bench/pipeline.py --pass-through [--exceptions 60000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG = "postgres://{user}@127.0.0.1:5432/{db}"
QUEUES = ["intake", "triage", "policy", "playbook", "tool", "resolution", "feedback"]
TOPIC_TEMPLATE = "sentinai.bench.{tenant}"

# The finance pack's scenarios: (name, share, item factory). Amounts pick the severity rule.
#   settlement, medium: check counterparty, retry, tell desk, resolve (12 agent hops)
#   settlement, high: the same chain at high severity (a shorter SLA)
#   payment rejected: tell desk, resolve; feed break: rerun, resolve (8 hops each)
#   settlement, critical: stops at desk_approval until the bench approves it through the API
SCENARIOS = [
    ("settlement_medium", 0.70),
    ("settlement_high", 0.10),
    ("payment_rejected", 0.09),
    ("feed_break", 0.09),
    ("settlement_critical", 0.02),
]


def scenario_item(name: str, n: int, source: str) -> dict:
    if name.startswith("settlement"):
        amount = {"settlement_medium": 5_000.0, "settlement_high": 250_000.0, "settlement_critical": 2_500_000.0}[name]
        payload = {
            "trade_id": f"T-{n:09d}",
            "amount": amount,
            "currency": "EUR",
            "counterparty": "BANK OF EXAMPLE",
            "reason": "insufficient securities; contact ops.desk@example.com",
            "account_holder": "Jane Example",  # a PII field of the pack: redacted by the API
            "settlement_date": "2026-12-01",
        }
    elif name == "payment_rejected":
        payload = {
            "payment_id": f"P-{n:09d}",
            "amount": 12_500.0,
            "currency": "EUR",
            "reject_code": "AC04",
            "beneficiary_account": "DE89370400440532013000",
        }
    else:
        payload = {"feed": f"prices-{n % 7}", "detected_at": "2026-12-01T09:00:00Z", "records_affected": 120}
    return {"source_system": source, "source_ref": f"{source}-{n}", "payload": payload}


def configure_environment(args) -> dict:
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": PG.format(user="sentinai_app", db=args.db),
        "DATABASE_OWNER_URL": PG.format(user="sentinai", db=args.db),
        "CELERY_BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{args.vhost}",
        "REDIS_URL": f"redis://127.0.0.1:6379/{args.redis_db}",
        "SENTINAI_BATCH_SIZE": str(args.batch_size),
        "SENTINAI_LANES": str(args.lanes),
        "SENTINAI_VAR_DIR": str(args.log_dir),
        "PROMETHEUS_MULTIPROC_DIR": str(args.log_dir / "prometheus"),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    (args.log_dir / "prometheus").mkdir(parents=True, exist_ok=True)
    if args.pass_through:
        from bench.passthrough import IMPLEMENTATIONS

        env["SENTINAI_AGENT_IMPLEMENTATIONS"] = json.dumps(IMPLEMENTATIONS)
    if args.stream and not args.pass_through:
        env["KAFKA_BOOTSTRAP_SERVERS"] = args.kafka
        env["SENTINAI_KAFKA_TOPIC_TEMPLATE"] = TOPIC_TEMPLATE
    else:
        env["KAFKA_BOOTSTRAP_SERVERS"] = ""
    os.environ.update(env)
    return dict(os.environ)


def schema_key() -> str:
    """A digest of every migration: a template database migrated from the same files is the same."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(ROOT.glob("*/migrations/*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def prepare_services(args, env: dict) -> None:
    import psycopg

    # A fresh database every run: results do not depend on what earlier runs left behind. It is a copy
    # of a template migrated once per set of migrations (`migrate` takes a minute on a busy machine).
    template = f"{args.db}_tpl_{schema_key()}"
    with psycopg.connect(PG.format(user="sentinai", db="postgres"), autocommit=True) as conn:
        for attempt in range(10):
            try:
                conn.execute(f"DROP DATABASE IF EXISTS {args.db} WITH (FORCE)")
                break
            except psycopg.errors.InsufficientPrivilege:
                # A backend of the previous run's runtime role still closing: the owner may not end it.
                if attempt == 9:
                    raise
                time.sleep(2)
        existing = {
            r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [f"{args.db}_tpl_%"])
        }
        if template in existing:
            conn.execute(f"CREATE DATABASE {args.db} TEMPLATE {template}")
        else:
            for old in existing:
                conn.execute(f"DROP DATABASE IF EXISTS {old}")
            conn.execute(f"CREATE DATABASE {template}")
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                cwd=ROOT,
                env={**env, "DATABASE_URL": PG.format(user="sentinai_app", db=template),
                     "DATABASE_OWNER_URL": PG.format(user="sentinai", db=template)},
                check=True,
            )  # fmt: skip
            conn.execute(f"CREATE DATABASE {args.db} TEMPLATE {template}")
    vhosts = subprocess.run(["rabbitmqctl", "-q", "list_vhosts"], capture_output=True, text=True, check=True).stdout
    if args.vhost not in vhosts.split():
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", args.vhost], check=True)
        subprocess.run(
            ["rabbitmqctl", "-q", "set_permissions", "-p", args.vhost, "guest", ".*", ".*", ".*"], check=True
        )
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "--no-table-headers", "-p", args.vhost, "list_queues", "name"],
        capture_output=True,
        text=True,
    ).stdout
    # Every lane of every agent (and lanes of earlier runs' settings), purged over one AMQP connection:
    # a rabbitmqctl call per queue starts an Erlang VM each time (seconds apiece on a busy machine).
    stale = [q for q in listed.split() if q.split(".", 1)[0] in (*QUEUES, "sla", "scheduler")]
    if stale:
        from kombu import Connection

        with Connection(env["CELERY_BROKER_URL"]) as broker:
            channel = broker.default_channel
            for queue in stale:
                channel.queue_purge(queue)


def platform_url(args) -> str | None:
    """The platform role's URL for the bench database, when the migrations granted that role the
    tables (the all-tenants scope then works only for it), else None."""
    import psycopg

    try:
        with psycopg.connect(PG.format(user="sentinai", db=args.db), autocommit=True) as conn:
            granted = conn.execute("SELECT has_table_privilege('sentinai_platform', 'exception', 'SELECT')").fetchone()
    except psycopg.Error:
        return None
    return PG.format(user="sentinai_platform", db=args.db) if granted and granted[0] else None


def runtime_env(env: dict) -> dict:
    """The runtime (API, workers, relay) never holds the schema owner's credentials."""
    return {k: v for k, v in env.items() if k != "DATABASE_OWNER_URL"}


class Processes:
    """The platform's processes for one run, stopped together."""

    def __init__(self, args, env: dict, platform_url: str | None = None):
        self.args = args
        self.env = runtime_env(env)
        # Where the schema has a platform role (the processes that cross tenants connect as it), the
        # API, beat, the scheduler's queue and the relay use it, as in the Procfile; else all connect
        # as the application role.
        self.platform_url = platform_url
        self.procs: list[subprocess.Popen] = []
        self.groups: dict[int, str] = {}

    def spawn(self, name: str, group: str, cmd: list[str], *, platform: bool = False) -> subprocess.Popen:
        log = (self.args.log_dir / f"{name}.log").open("w")
        env = {**self.env, "DATABASE_URL": self.platform_url} if platform and self.platform_url else self.env
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        self.groups[proc.pid] = group
        return proc

    def start(self, *, api: bool, scheduler: bool, stream: bool) -> None:
        args = self.args
        queues = QUEUES + (["scheduler"] if scheduler and not self.platform_url else [])
        for n in range(args.workers):
            self.spawn(
                f"worker-{n}",
                "workers",
                [
                    sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", ",".join(queues),
                    "-n", f"bench{n}@%h", "-P", args.pool, "-c", str(args.concurrency),
                    "--without-mingle", "--without-gossip", "--without-heartbeat", "-l", "WARNING",
                ],
            )  # fmt: skip
        if scheduler and self.platform_url:
            self.spawn(
                "scheduler",
                "beat",
                [
                    sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "scheduler", "-n", "benchsched@%h",
                    "-P", "threads", "-c", "1", "--without-mingle", "--without-gossip", "--without-heartbeat",
                    "-l", "WARNING",
                ],
                platform=True,
            )  # fmt: skip
        if scheduler:
            self.spawn(
                "beat",
                "beat",
                [
                    sys.executable, "-m", "celery", "-A", "config", "beat", "-l", "WARNING",
                    "-s", str(args.log_dir / "beat-schedule"),
                ],
                platform=True,
            )  # fmt: skip
        if api:
            self.spawn(
                "gunicorn",
                "api",
                [
                    sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{args.port}",
                    "--workers", str(args.api_workers), "--threads", str(args.api_threads),
                ],
                platform=True,
            )  # fmt: skip
        if stream:
            self.spawn("relay", "relay", [sys.executable, "manage.py", "relay_event_stream"], platform=True)
        time.sleep(6)
        for proc in self.procs:
            if proc.poll() is not None:
                raise SystemExit(f"a process exited at start ({proc.args[:6]}); see {args.log_dir}")
        if api:
            wait_http(args.port)

    def stop(self) -> None:
        for proc in self.procs:
            # gunicorn's SIGTERM waits up to 30 s for keep-alive connections; SIGINT is its quick exit.
            proc.send_signal(signal.SIGINT if self.groups.get(proc.pid) == "api" else signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def wait_http(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/api/health")
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"the API did not answer on port {port}")


# "autovacuum": the bench database's autovacuum workers, apart from the backends that serve the pipeline
# (their work comes in bursts after a phase that wrote much; one that started and ended between two
# samples is missed). "probes": the backends of the bench's own queries (the window's count of open
# exceptions, the throughput sampler, the approver's list), apart from PostgreSQL's figure for the product.
GROUPS = ("postgres", "autovacuum", "rabbitmq", "workers", "api", "client", "probes", "relay", "beat")

# Backend pids of this process's database connections (scalar() adds each connection's on use).
PROBE_BACKENDS: set[int] = set()


def process_cpu(args, own: dict[int, str]) -> dict[tuple[str, int], float]:
    """CPU seconds used so far by each process of each component, from /proc. `own`: pid -> group of
    the processes this run started (their children count with them). PostgreSQL: the bench
    database's backends and the shared background processes (WAL writer, checkpointer, ...)."""
    from bench.procstat import processes

    groups: dict[tuple[str, int], float] = {}
    me = os.getpid()
    for proc in processes():
        group = own.get(proc.pid) or own.get(proc.ppid)
        if proc.pid == me:
            groups[("client", proc.pid)] = proc.cpu_seconds
        elif group:
            groups[(group, proc.pid)] = proc.cpu_seconds
        elif proc.pid in PROBE_BACKENDS:
            groups[("probes", proc.pid)] = proc.cpu_seconds
        elif proc.is_postgres_backend_of(args.db) and "autovacuum worker" in proc.cmdline:
            groups[("autovacuum", proc.pid)] = proc.cpu_seconds
        elif proc.is_postgres_backend_of(args.db) or proc.is_postgres_shared():
            groups[("postgres", proc.pid)] = proc.cpu_seconds
        elif "beam.smp" in proc.comm:
            groups[("rabbitmq", proc.pid)] = proc.cpu_seconds
    return groups


def cpu_by_component(before: dict[tuple[str, int], float], after: dict[tuple[str, int], float]) -> dict[str, float]:
    """CPU seconds each component used between two snapshots, process by process (a process started in
    between counts whole; a restarted broker does not make its component's figure negative)."""
    used = dict.fromkeys(GROUPS, 0.0)
    for (group, pid), seconds in after.items():
        used[group] += seconds - before.get((group, pid), 0.0)
    return used


def database_work(db: str) -> dict[str, float]:
    """Cumulative work counters of the bench database (pg_stat_database, pg_stat_user_tables)."""
    row = scalar(
        "SELECT json_build_object('commits', xact_commit, 'rows_fetched', tup_fetched, 'rows_inserted', "
        "tup_inserted, 'rows_updated', tup_updated, 'rows_deleted', tup_deleted, 'blocks_hit', blks_hit, "
        "'blocks_read', blks_read) FROM pg_stat_database WHERE datname = %s",
        [db],
    )
    tables = _rows(
        "SELECT relname, coalesce(idx_scan, 0) + coalesce(seq_scan, 0), n_tup_upd, n_tup_hot_upd, n_tup_ins "
        "FROM pg_stat_user_tables WHERE relname IN ('exception', 'tenant', 'outbox')"
    )
    work = {k: float(v) for k, v in (json.loads(row) if isinstance(row, str) else row).items()}
    for name, scans, updates, hot, inserts in tables:
        if name == "outbox":
            work["broker_messages"] = float(inserts)  # one outbox row = one published batch message
            continue
        work[f"{name}_scans"] = float(scans)
        if name == "exception":
            work["exception_updates"] = float(updates)
            work["exception_hot_updates"] = float(hot)
    work["database_bytes"] = float(scalar("SELECT pg_database_size(%s)", [db]))
    # The cluster's WAL position: the bench database's WAL only while nothing else writes to the cluster.
    work["cluster_wal_bytes"] = float(scalar("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))
    return work


def cpu_times() -> tuple[float, float, float]:
    """The machine's CPU time so far (/proc/stat): busy, total, and stolen - time the hypervisor gave to
    other guests while this one wanted it."""
    fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields), fields[7]


def cpu_busy() -> tuple[float, float]:
    return cpu_times()[:2]


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


def postgres_settings() -> dict:
    from django.db import connection

    names = ["shared_buffers", "max_wal_size", "checkpoint_timeout", "wal_compression", "synchronous_commit"]
    settings = {}
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute(f"SHOW {name}")
            settings[name] = cursor.fetchone()[0]
    return settings


# Outbox rows ever made (one per broker message of a batch): the id sequence, exact at once.
OUTBOX_ROWS_MADE = "SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('outbox', 'id')::regclass), 0)"


class PhaseCost:
    """What one phase cost per agent hop: CPU by component (from /proc) and hops per broker message.
    Made at the phase's start; `stop()` takes the CPU snapshot when its work is done, `figures()`
    reads the counts (after any wait for statistics) and returns the figures."""

    def __init__(self, args, groups: dict[int, str]):
        self.args, self.groups = args, groups
        self.applied0 = scalar(APPLIED_HOPS)
        self.messages0 = scalar(OUTBOX_ROWS_MADE)
        self.busy0, self.total0, self.stolen0 = cpu_times()
        self.components0 = process_cpu(args, groups)

    def stop(self) -> None:
        self.busy1, self.total1, self.stolen1 = cpu_times()
        self.components1 = process_cpu(self.args, self.groups)

    def figures(self) -> tuple[int, dict]:
        """(hops applied in the phase, its cost figures)."""
        applied = scalar(APPLIED_HOPS) - self.applied0
        messages = scalar(OUTBOX_ROWS_MADE) - self.messages0
        cpu_seconds = (self.busy1 - self.busy0) / os.sysconf("SC_CLK_TCK")
        by_component = {
            name: round(seconds / max(applied, 1) * 1e6, 1)
            for name, seconds in cpu_by_component(self.components0, self.components1).items()
        }
        return applied, {
            "machine_cpu_utilisation": round((self.busy1 - self.busy0) / (self.total1 - self.total0), 3),
            # A share of the machine's CPU time; a shared host's noise, apart from any process here.
            "machine_cpu_stolen": round((self.stolen1 - self.stolen0) / (self.total1 - self.total0), 3),
            "machine_cpu_us_per_hop": round(cpu_seconds / max(applied, 1) * 1e6, 1),
            "cpu_us_per_hop_by_component": by_component,
            "cpu_us_per_hop_ours": round(sum(by_component.values()), 1),
            "hops_per_broker_message": round(applied / max(messages, 1), 2),
        }


APPLIED_HOPS = "SELECT count(*) FROM processed_event"


def scalar(sql: str, params=()):
    from django.db import connection

    from sentinai.tenancy.scope import all_tenants_scope

    with all_tenants_scope(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        PROBE_BACKENDS.add(connection.connection.info.backend_pid)
        return cursor.fetchone()[0]


def machine_speed() -> dict:
    """How fast this machine is today, on fixed work (best of three, milliseconds): a Python loop of
    the kind the agents run (dicts, JSON, UUIDs) and a PostgreSQL statement of fixed work. The same
    code measured 600 k recorded events/min one day and 320 k the next on "the same" 2-core machine;
    runs of different days compare only beside these figures."""
    import gc
    import uuid

    import orjson

    def python_work() -> None:
        for i in range(20_000):
            row = {"id": str(uuid.UUID(int=i)), "n": i, "kind": "SETTLEMENT_FAILURE", "amount": i * 1.5}
            orjson.loads(orjson.dumps(row))

    def best(work) -> float:
        # Without the collector: its pauses depend on what the process holds, not on the machine.
        gc.collect()
        gc.disable()
        try:
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                work()
                times.append((time.perf_counter() - t0) * 1000)
        finally:
            gc.enable()
        return round(min(times), 1)

    return {
        "python_ms": best(python_work),
        "postgres_ms": best(lambda: scalar("SELECT sum(hashtext(i::text)) FROM generate_series(1, 1000000) i")),
    }


def percentile(rows: list[float], q: float) -> float | None:
    return round(rows[max(0, int(len(rows) * q) - 1)], 1) if rows else None


class ApiClient:
    """One keep-alive HTTP connection to the API (one per client thread)."""

    def __init__(self, port: int, key: str):
        self.port = port
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: dict) -> tuple[int, dict, dict]:
        import orjson

        data = orjson.dumps(body)
        for attempt in range(3):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            try:
                self.conn.request("POST", path, body=data, headers=self.headers)
                response = self.conn.getresponse()
                raw = response.read()
                return response.status, (orjson.loads(raw) if raw else {}), dict(response.getheaders())
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


class ProductRun:
    """The real pipeline behind the HTTP API (module docstring)."""

    def __init__(self, args, tenant_id: str, key: str, processes: Processes):
        self.args = args
        self.tenant_id = tenant_id
        self.key = key
        self.processes = processes
        self.lock = threading.Lock()
        self.accepted = 0
        self.rejected = 0
        self.refused = 0
        self.n = 0
        self.open = 0
        self.approved = 0
        self.approve_conflicts = 0
        self.samples: list[tuple[float, int, int]] = []  # (t, recorded, applied) from the statistics
        self.lag_max = 0.0
        self.lag_samples: list[float] = []
        self.stopping = threading.Event()
        self.rng = random.Random(16)
        self.request_ms: list[float] = []

    # --- probes (their own connections: each thread has its own Django connection) -------------
    def open_count(self) -> int:
        # The partial index exception_open (closed_at IS NULL) makes this cheap at any table size.
        return scalar("SELECT count(*) FROM exception WHERE tenant_id = %s AND closed_at IS NULL", [self.tenant_id])

    def feedback_count(self) -> int:
        return scalar("SELECT count(*) FROM processed_event WHERE consumer = 'feedback'")

    def _sampler(self, started: float) -> None:
        from django.db import connection

        while not self.stopping.is_set():
            try:
                self.open = self.open_count()
                recorded = scalar(
                    "SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_user_tables WHERE relname = 'exception_event'"
                )
                applied = scalar(
                    "SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_user_tables WHERE relname = 'processed_event'"
                )
                self.samples.append((time.monotonic() - started, int(recorded), int(applied)))
                if self.args.stream:
                    lag = scalar("SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0) FROM stream_outbox")
                    self.lag_samples.append(float(lag))
                    self.lag_max = max(self.lag_max, float(lag))
            except Exception as exc:  # a probe must not end the run
                print(f"sampler: {exc}", file=sys.stderr)
            time.sleep(0.5)
        connection.close()

    def _approver(self) -> None:
        """A desk operator: approves every critical exception that waits for a human, through the API."""
        from django.db import connection

        client = ApiClient(self.args.port, self.key)
        asked: set[str] = set()
        while not self.stopping.is_set():
            try:
                waiting = scalar(
                    "SELECT coalesce(array_agg(id::text), '{}') FROM (SELECT id FROM exception WHERE tenant_id = %s "
                    "AND closed_at IS NULL AND status = 'awaiting_approval' LIMIT 500) w",
                    [self.tenant_id],
                )
                for exception_id in waiting:
                    if exception_id in asked:
                        continue
                    status, _, _ = client.post(
                        f"/api/exceptions/{self.tenant_id}/{exception_id}/approve",
                        {"decision": "approve", "comment": "bench desk: approved"},
                    )
                    if status in (200, 202):
                        asked.add(exception_id)
                        self.approved += 1
                    elif status == 409:
                        self.approve_conflicts += 1
            except Exception as exc:
                print(f"approver: {exc}", file=sys.stderr)
            time.sleep(0.5)
        connection.close()

    # --- the client --------------------------------------------------------------------------
    def items(self, count: int, source: str) -> list[dict]:
        names = [n for n, _ in SCENARIOS]
        weights = [w for _, w in SCENARIOS]
        with self.lock:
            start = self.n
            self.n += count
            picks = self.rng.choices(names, weights, k=count)
        return [scenario_item(name, start + i, source) for i, name in enumerate(picks)]

    def post_batch(self, client: ApiClient, items: list[dict]) -> None:
        path = f"/api/exceptions/{self.tenant_id}/batch"
        while True:
            t0 = time.monotonic()
            status, body, headers = client.post(path, {"items": items})
            elapsed = (time.monotonic() - t0) * 1000
            if status == 429:
                with self.lock:
                    self.refused += 1
                time.sleep(float(headers.get("Retry-After", "1")))
                continue
            if status != 202:
                raise SystemExit(f"batch ingest answered {status}: {str(body)[:500]}")
            with self.lock:
                self.accepted += body["accepted"] + body["deduplicated"]
                self.rejected += body["rejected"]
                self.request_ms.append(elapsed)
            return

    def _producer(self, target: int, source: str) -> None:
        from django.db import connection

        client = ApiClient(self.args.port, self.key)
        while True:
            with self.lock:
                room = target - self.n
            if room <= 0:
                break
            if self.open >= self.args.window:
                time.sleep(0.05)
                continue
            self.post_batch(client, self.items(min(self.args.http_batch, room), source))
        connection.close()

    def wait_drained(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.open_count() == 0 and self.feedback_count() >= self.accepted:
                return True
            time.sleep(0.5)
        return False

    # --- phases ------------------------------------------------------------------------------
    def throughput(self) -> dict:
        args = self.args
        work0 = database_work(args.db)
        cost = PhaseCost(args, self.processes.groups)
        started = time.monotonic()
        sampler = threading.Thread(target=self._sampler, args=(started,), daemon=True)
        sampler.start()
        producers = [
            threading.Thread(target=self._producer, args=(args.exceptions, "bench"), daemon=True)
            for _ in range(args.clients)
        ]
        for thread in producers:
            thread.start()
        for thread in producers:
            thread.join()
        produced = time.monotonic() - started
        drained = self.wait_drained(args.timeout)
        elapsed = time.monotonic() - started
        cost.stop()
        time.sleep(1.5)  # backends report their statistics within a second
        work1 = database_work(args.db)
        recorded = scalar("SELECT count(*) FROM exception_event")
        applied, cost_figures = cost.figures()
        # Steady: between 10 % and 90 % of the recorded events (statistics lag by ~1 s: same both ends).
        final = self.samples[-1][1] if self.samples else 0
        lo = next((s for s in self.samples if s[1] >= final * 0.1), None)
        hi = next((s for s in self.samples if s[1] >= final * 0.9), None)
        steady_recorded = steady_applied = None
        if lo and hi and hi[0] > lo[0]:
            steady_recorded = int((hi[1] - lo[1]) / (hi[0] - lo[0]) * 60)
            steady_applied = int((hi[2] - lo[2]) / (hi[0] - lo[0]) * 60)
        types = dict(
            Counter(
                dict(
                    _rows(
                        "SELECT status, count(*) FROM exception WHERE tenant_id = %s GROUP BY status", [self.tenant_id]
                    )
                )
            )
        )
        return {
            "exceptions": self.accepted,
            "rejected_items": self.rejected,
            "refused_requests": self.refused,
            "drained": drained,
            "exception_statuses": types,
            "approved_through_api": self.approved,
            "critical_exceptions": scalar(
                "SELECT count(*) FROM exception WHERE tenant_id = %s AND severity = 'critical'", [self.tenant_id]
            ),
            "events_recorded": recorded,
            "events_applied": applied,
            "events_recorded_per_exception": round(recorded / max(self.accepted, 1), 2),
            "hops_per_exception": round(applied / max(self.accepted, 1), 2),
            "elapsed_s": round(elapsed, 2),
            "producer_done_s": round(produced, 2),
            "exceptions_per_min": int(self.accepted / elapsed * 60),
            "recorded_events_per_min": int(recorded / elapsed * 60),
            "applied_events_per_min": int(applied / elapsed * 60),
            "steady_recorded_events_per_min": steady_recorded,
            "steady_applied_events_per_min": steady_applied,
            **cost_figures,
            # Work PostgreSQL did per agent hop: counts, so unlike CPU time they do not grow when other
            # users load the machine. exception_updates/hot: row versions of the wide projection row.
            "database_work_per_hop": {name: round((work1[name] - work0[name]) / max(applied, 1), 2) for name in work0},
            "http_batch": args.http_batch,
            "http_batch_p50_ms": percentile(sorted(self.request_ms), 0.5),
            "http_batch_p99_ms": percentile(sorted(self.request_ms), 0.99),
            "outbox_rows_left": scalar("SELECT count(*) FROM outbox"),
            "stream_lag_max_s": round(self.lag_max, 2) if args.stream else None,
            "stream_rows_left": scalar("SELECT count(*) FROM stream_outbox") if args.stream else None,
        }

    def latency(self, exceptions_per_min: int, load: float) -> dict:
        """Open loop at `load` of the measured exception rate, 50 exceptions per request."""
        args = self.args
        rate = exceptions_per_min / 60 * load
        chunk = args.latency_chunk
        interval = chunk / rate
        source = f"bench-lat-{int(load * 100)}"
        client = ApiClient(args.port, self.key)
        before = self.accepted
        # At a share of the throughput the batches are small: what a hop costs then, and how many
        # events a broker message carried on average (every agent and the scheduler together).
        cost = PhaseCost(args, self.processes.groups)
        started = time.monotonic()
        next_at = started
        while time.monotonic() - started < args.latency_seconds:
            self.post_batch(client, self.items(chunk, source))
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        self.wait_drained(args.timeout)
        cost.stop()
        _, cost_figures = cost.figures()
        rows = sorted(
            float(r[0])
            for r in _rows(
                "SELECT extract(epoch FROM f.recorded_at - i.recorded_at) * 1000 FROM exception x "
                "JOIN exception_event i ON i.exception_id = x.id AND i.event_type = 'ExceptionIngested' "
                "JOIN exception_event f ON f.exception_id = x.id AND f.event_type = 'FeedbackCaptured' "
                "WHERE x.source_system = %s AND x.severity <> 'critical'",
                [source],
            )
        )
        return {
            "load": load,
            "exceptions_per_min": int(rate * 60),
            "recorded_events_per_min": None,
            "exceptions": self.accepted - before,
            "measured": len(rows),
            "p50_ms": round(statistics.median(rows), 1) if rows else None,
            "p99_ms": percentile(rows, 0.99),
            "max_ms": round(rows[-1], 1) if rows else None,
            **cost_figures,
        }

    def execute(self) -> dict:
        result = {"benchmark": "pipeline", "mode": "product", "when": datetime.now(UTC).isoformat()}
        result["load_average_before"] = load_average()
        approver = threading.Thread(target=self._approver, daemon=True)
        approver.start()
        try:
            result.update(self.throughput())
            result["load_average_after_throughput"] = load_average()
            result["latency"] = []
            # The phases' rates are shares of this run's throughput, or of a fixed rate (to compare
            # code changes at the same arrival rate: a faster pipeline would otherwise get more load).
            base = self.args.latency_base or result["exceptions_per_min"]
            result["latency_base_exceptions_per_min"] = base
            for load in self.args.latency_loads:
                row = self.latency(base, load)
                row["recorded_events_per_min"] = int(
                    row["exceptions_per_min"] * result["events_recorded_per_exception"]
                )
                result["latency"].append(row)
        finally:
            self.stopping.set()
        result["stream_lag_max_s"] = round(self.lag_max, 2) if self.args.stream else None
        if self.args.stream:  # the samples of the whole run, every 0.5 s
            result["stream_lag_p50_s"] = percentile(sorted(self.lag_samples), 0.5)
            result["stream_lag_p95_s"] = percentile(sorted(self.lag_samples), 0.95)
        result["load_average_after"] = load_average()
        return result


def _rows(sql: str, params=()) -> list[tuple]:
    from django.db import connection

    from sentinai.tenancy.scope import all_tenants_scope

    with all_tenants_scope(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


class PassThroughRun:
    PAYLOAD = {
        "trade_id": "T-0000001",
        "amount": 250000.0,
        "currency": "EUR",
        "counterparty": "BANK OF EXAMPLE",
        "reason": "insufficient securities in the delivering account",
    }

    def __init__(self, args, tenants, processes):
        from bench.passthrough import HOPS_PER_EXCEPTION

        self.args = args
        self.tenants = tenants
        self.processes = processes
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
        components0 = process_cpu(args, self.processes.groups)
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
        components1 = process_cpu(args, self.processes.groups)
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
                name: round(seconds / max(processed, 1) * 1e6, 1)
                for name, seconds in cpu_by_component(components0, components1).items()
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
        result = {
            "benchmark": "pipeline",
            "mode": "pass-through",
            "when": datetime.now(UTC).isoformat(),
            **self.throughput(),
        }
        if self.args.latency_seconds > 0:
            result["latency"] = self.latency(result["events_per_min"])
        result["config"] = vars(self.args)
        return result


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pass-through", action="store_true", help="the framework with the stub agents of bench/passthrough.py"
    )
    parser.add_argument("--exceptions", type=int, default=None, help="exceptions in the throughput phase")
    parser.add_argument("--window", type=int, default=None, help="max exceptions open (in flight)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (each consumes every agent queue)")
    parser.add_argument("--pool", default="threads", help="Celery pool of each worker process")
    parser.add_argument("--concurrency", type=int, default=2, help="threads (or children) per worker process")
    parser.add_argument("--batch-size", type=int, default=500, help="events per broker message")
    parser.add_argument("--lanes", type=int, default=4, help="lanes per agent (SENTINAI_LANES)")
    parser.add_argument("--http-batch", type=int, default=500, help="exceptions per batch request")
    parser.add_argument("--clients", type=int, default=2, help="client threads posting batches")
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--api-threads", type=int, default=4)
    parser.add_argument("--port", type=int, default=18416)
    parser.add_argument("--no-stream", dest="stream", action="store_false", help="no Kafka relay")
    parser.add_argument("--kafka", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or "127.0.0.1:9092")
    parser.add_argument("--db", default="sentinai_bench")
    parser.add_argument("--vhost", default="sentinai_bench")
    parser.add_argument("--redis-db", type=int, default=14)
    parser.add_argument("--tenants", type=int, default=1, help="(pass-through only)")
    parser.add_argument("--chunk", type=int, default=500, help="(pass-through) exceptions appended per transaction")
    parser.add_argument("--latency-seconds", type=float, default=15, help="length of each latency phase; 0: none")
    parser.add_argument("--latency-loads", default="0.3,0.5,0.7", help="shares of the measured throughput")
    parser.add_argument(
        "--latency-base", type=int, default=0, help="exceptions/min the latency loads are shares of (0: measured)"
    )
    parser.add_argument("--latency-load", type=float, default=0.3, help="(pass-through) share of the throughput")
    parser.add_argument("--latency-chunk", type=int, default=50, help="exceptions per request in the latency phases")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    if args.exceptions is None:
        args.exceptions = 60_000 if args.pass_through else 30_000
    if args.window is None:
        args.window = 10_000 if args.pass_through else 8_000
    args.latency_loads = [float(x) for x in args.latency_loads.split(",") if x] if args.latency_seconds > 0 else []
    if args.pass_through:
        args.stream = False
    mode = "framework" if args.pass_through else "pipeline"
    args.log_dir = ROOT / "bench" / "results" / f"{mode}-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    args.log_dir.mkdir(parents=True, exist_ok=True)
    return args


def main() -> None:
    args = parse_args()
    env = configure_environment(args)
    prepare_services(args, env)
    platform = platform_url(args)
    if platform:
        # The bench's own probes read across tenants (counts, the approver's list): the platform role.
        os.environ["DATABASE_URL"] = platform

    import django

    django.setup()
    from sentinai.tenancy.services import api_key_create, tenant_create_or_update

    tenants = [f"bench-{n}" for n in range(args.tenants if args.pass_through else 1)]
    for tenant_id in tenants:
        # Admission limits far above the bench's rate: the figure is the pipeline's, not the limiter's.
        tenant, _ = tenant_create_or_update(
            tenant_id=tenant_id, domain_pack="finance", rate_per_second=1e6, burst=1_000_000, max_in_flight=10_000_000
        )
    speed = machine_speed()  # before anything of the run is started
    processes = Processes(args, env, platform)
    processes.start(api=not args.pass_through, scheduler=not args.pass_through, stream=args.stream)
    try:
        if args.pass_through:
            result = PassThroughRun(args, tenants, processes).execute()
        else:
            _, key = api_key_create(tenant=tenant, name="bench-desk", scopes=["ingest", "read", "approve"])
            result = ProductRun(args, tenants[0], key, processes).execute()
            result["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    finally:
        processes.stop()
    result["postgres_settings"] = postgres_settings()
    result["machine_speed_ms"] = speed
    (args.log_dir / "result.json").write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str))
    if args.pass_through:
        report_framework(result)
    else:
        report_product(result)


def speed_line(result: dict) -> str:
    speed = result["machine_speed_ms"]
    return f"machine speed (fixed work, lower is faster): python {speed['python_ms']} ms, postgres {speed['postgres_ms']} ms"


def report_framework(result: dict) -> None:
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
    print(speed_line(result))
    print("framework with pass-through agents (stub figure, not the product's):")
    print(f"events_per_min={result['events_per_min']}")


def report_product(r: dict) -> None:
    print(
        f"product: {r['exceptions']:,} exceptions over HTTP in {r['elapsed_s']} s "
        f"(statuses {r['exception_statuses']}, {r['approved_through_api']} approved through the API)"
    )
    print(
        f"  exceptions/min {r['exceptions_per_min']:,}; recorded events/min {r['recorded_events_per_min']:,} "
        f"(steady {r['steady_recorded_events_per_min'] or 0:,}); agent-applied events/min "
        f"{r['applied_events_per_min']:,} (steady {r['steady_applied_events_per_min'] or 0:,}); "
        f"{r['events_recorded_per_exception']} recorded events and {r['hops_per_exception']} hops per exception"
    )
    parts = ", ".join(f"{k} {v}" for k, v in r["cpu_us_per_hop_by_component"].items())
    print(
        f"  CPU per agent hop: {r['cpu_us_per_hop_ours']} us ours ({parts}); machine {r['machine_cpu_us_per_hop']} us "
        f"at {r['machine_cpu_utilisation']:.0%} utilisation (includes other users of the machine; "
        f"{r['machine_cpu_stolen']:.1%} stolen by the host); "
        f"{r['hops_per_broker_message']} hops per broker message"
    )
    work = r.get("database_work_per_hop") or {}
    print("  PostgreSQL work per agent hop: " + ", ".join(f"{k} {v}" for k, v in work.items()))
    for row in r.get("latency") or []:
        print(
            f"  latency at {row['load']:.0%} load ({row['exceptions_per_min']:,} exceptions/min, "
            f"~{row['recorded_events_per_min']:,} recorded events/min): p50 {row['p50_ms']} ms, "
            f"p99 {row['p99_ms']} ms over {row['measured']:,} exceptions; {row['cpu_us_per_hop_ours']} us CPU "
            f"per hop ours at {row['machine_cpu_utilisation']:.0%} busy ({row['machine_cpu_stolen']:.1%} "
            f"stolen), {row['hops_per_broker_message']} hops "
            f"per broker message"
        )
    if r.get("stream_lag_max_s") is not None:
        spread = f", p50 {r['stream_lag_p50_s']} s, p95 {r['stream_lag_p95_s']} s" if "stream_lag_p50_s" in r else ""
        print(f"  Kafka stream lag: max {r['stream_lag_max_s']} s{spread}, {r['stream_rows_left']} stream rows left")
    print(f"  load average {r['load_average_before']} before, {r['load_average_after']} after")
    print(f"  {speed_line(r)}")
    print(f"events_per_min={r['recorded_events_per_min']}")


if __name__ == "__main__":
    main()
