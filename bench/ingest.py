#!/usr/bin/env python
"""Command latency under load: `POST` of single exceptions and of batches of 100 through the HTTP API of
the `make stack` topology while its pipeline works at a share (--load, default 50 %) of its throughput.

The topology is the one the fault tests and bench/soak.py start (tests/support/topology.py): the
Procfile (or --procfile, a variant layout) rendered by scripts/supervision.py and run by supervisord,
after `migrate` and `seed_demo`, with the settings' own timers (not the fault tests' fast ones). Unlike
those, it runs on the shared services of scripts/services.sh (the ones `make stack` uses: PostgreSQL
as installed, fsync on), in a database and vhost of its own made fresh each run (--db, --vhost) and
a Redis database number (--redis-db; not flushed, the admission counts there are reconciled with the
fresh database). Flower is left out.

1. **Capacity**: --capacity-exceptions exceptions of the finance mix (SCENARIOS of bench/pipeline.py
   without the critical settlements, which wait for a human), in the load phase's mix of singles and
   batches, posted by the same client threads as fast as the API takes them; the pipeline's throughput
   is their count over the time from the first recorded to the last terminal (exceptions made terminal
   per second). --capacity skips it.
2. **Load**: for --seconds, open loop (requests are due at fixed intervals whatever the answers): the
   offered exception rate is --load x capacity, of which --single-share goes as single `POST
   /api/exceptions/{tenant}` requests sent by --singles client threads and the rest as `POST
   .../batch` requests of --batch exceptions sent by --batchers threads. Each thread holds one
   keep-alive connection. A request's latency runs from the moment it was due (so a client thread
   still busy with the previous one counts against the server: no coordinated omission) to its answer
   read; the service time (sent -> answered) is reported too.
3. **Drain**: waits for every accepted exception to be terminal; the pipeline's completion rate during
   the load phase and the backlog at its end say whether the pipeline kept up (it should, at 50 %).

Printed and written to bench/results/ingest-<time>/result.json: per kind p50/p90/p99/max (due and
service), requests/s and exceptions/s, statuses; the pipeline's capacity and completion rate; machine
CPU utilisation and CPU seconds by component (API, agent workers, the platform's other processes,
PostgreSQL, RabbitMQ, this client) over the load phase; the load average before and after (the
machine is shared: read the figures with it). A benchmark, not a test.

    python bench/ingest.py [--singles 8] [--batchers 4] [--load 0.5] [--seconds 180] [--procfile FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pipeline import SCENARIOS, ApiClient, cpu_busy, scenario_item  # noqa: E402
from tests.support.services import SharedPostgres, SharedRabbit, SharedRedis  # noqa: E402
from tests.support.topology import TENANT, Topology  # noqa: E402

MIX = [(name, share) for name, share in SCENARIOS if name != "settlement_critical"]
AGENTS = ("intake", "triage", "policy", "playbook", "tool", "resolution", "feedback")
TARGETS_P99_MS = {"single": 100.0, "batch": 300.0}


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank percentile (the smallest value with at least q of the values at or below it)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(round(q * len(ordered), 9)))  # round: 0.99 * 100 is 98.99999999999999
    return ordered[min(rank, len(ordered)) - 1]


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50_ms": _ms(percentile(values, 0.5)),
        "p90_ms": _ms(percentile(values, 0.9)),
        "p99_ms": _ms(percentile(values, 0.99)),
        "max_ms": _ms(max(values) if values else None),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def load_average() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


class Items:
    """The finance mix, numbered so every exception has its own source_ref."""

    def __init__(self, seed: int = 16):
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.n = 0

    def take(self, count: int, source: str) -> list[dict]:
        names, weights = zip(*MIX, strict=True)
        with self.lock:
            start, self.n = self.n, self.n + count
            picks = self.rng.choices(names, weights, k=count)
        return [scenario_item(name, start + i, source) for i, name in enumerate(picks)]


class Kind:
    """One kind of command (single or batch): a pacer puts due times on a queue at `rate` requests/s,
    `threads` clients take them; each answer's (due -> answered, sent -> answered) is recorded."""

    def __init__(self, name: str, *, port: int, key: str, path: str, size: int, rate: float, threads: int, items):
        self.name, self.port, self.key, self.path, self.size = name, port, key, path, size
        self.rate, self.threads, self.items = rate, threads, items
        self.due: queue.Queue[float | None] = queue.Queue()
        self.latency: list[float] = []
        self.service: list[float] = []
        self.statuses: Counter = Counter()
        self.exception_ids: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.workers: list[threading.Thread] = []

    def start(self) -> Kind:
        if self.rate <= 0:
            return self
        self.workers = [threading.Thread(target=self._work, daemon=True) for _ in range(self.threads)]
        for thread in self.workers:
            thread.start()
        threading.Thread(target=self._pace, daemon=True).start()
        return self

    def _pace(self) -> None:
        interval = 1.0 / self.rate
        due = time.monotonic() + random.random() * interval
        while not self.stop.is_set():
            time.sleep(max(0.0, due - time.monotonic()))
            self.due.put(due)
            due += interval
        for _ in self.workers:
            self.due.put(None)

    def _work(self) -> None:
        client = ApiClient(self.port, self.key)
        while (due := self.due.get()) is not None:
            items = self.items.take(self.size, f"ingest-{self.name}")
            body = items[0] if self.path.endswith(TENANT) else {"items": items}
            sent = time.monotonic()
            status, answer, _ = client.post(self.path, body)
            done = time.monotonic()
            with self.lock:
                self.statuses[status] += 1
                if status in (200, 202):
                    self.latency.append(done - due)
                    self.service.append(done - sent)
                    if "results" in answer:
                        self.exception_ids += [r["exception_id"] for r in answer["results"] if "exception_id" in r]
                    else:
                        self.exception_ids.append(answer["exception_id"])

    def finish(self, timeout: float = 120) -> None:
        self.stop.set()
        for thread in self.workers:
            thread.join(timeout)

    def report(self, seconds: float) -> dict:
        ok = len(self.latency)
        p99 = _ms(percentile(self.latency, 0.99))
        target = TARGETS_P99_MS.get(self.name)
        return {
            "clients": self.threads,
            "exceptions_per_request": self.size,
            "offered_requests_per_s": round(self.rate, 2),
            "requests_per_s": round(ok / seconds, 2),
            "exceptions_per_s": round(len(self.exception_ids) / seconds, 1),
            "statuses": dict(self.statuses),
            "latency_from_due": summary(self.latency),
            "service_time": summary(self.service),
            "target_p99_ms": target,
            "meets_target": None if p99 is None or target is None else p99 <= target,
        }


def post_all(topology: Topology, count: int, *, single_share: float, batch: int, singles: int, batchers: int,
             items: Items) -> list[str]:  # fmt: skip
    """`count` exceptions, `single_share` of them by single POSTs from `singles` threads and the rest in
    batches from `batchers` threads, all at once and as fast as the API takes them; their ids."""
    ids: list[str] = []
    lock = threading.Lock()
    todo: dict[str, queue.Queue] = {"single": queue.Queue(), "batch": queue.Queue()}
    single = round(count * single_share)
    for _ in range(single):
        todo["single"].put(1)
    for start in range(0, count - single, batch):
        todo["batch"].put(min(batch, count - single - start))

    def work(kind: str) -> None:
        client = ApiClient(topology.port, topology.key)
        path = f"/api/exceptions/{TENANT}" + ("/batch" if kind == "batch" else "")
        while True:
            try:
                size = todo[kind].get_nowait()
            except queue.Empty:
                return
            new = items.take(size, "ingest-capacity")
            status, answer, headers = client.post(path, {"items": new} if kind == "batch" else new[0])
            if status == 429:
                time.sleep(float(headers.get("Retry-After", "1")))
                todo[kind].put(size)
                continue
            if status not in (200, 202):
                raise SystemExit(f"{kind} ingest answered {status}: {str(answer)[:500]}")
            with lock:
                if kind == "batch":
                    ids.extend(r["exception_id"] for r in answer["results"] if "exception_id" in r)
                else:
                    ids.append(answer["exception_id"])

    workers = [threading.Thread(target=work, args=("single",)) for _ in range(singles)]
    workers += [threading.Thread(target=work, args=("batch",)) for _ in range(batchers)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return ids


def wait_terminal(topology: Topology, ids: list[str], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not topology.not_terminal(ids):
            return True
        time.sleep(2)
    return False


def terminal_times(topology: Topology, ids: list[str]) -> list[float]:
    """Epoch seconds at which each of these exceptions' terminal event was recorded, in order."""
    rows = topology.sql(
        "SELECT extract(epoch FROM recorded_at) FROM exception_event WHERE exception_id = ANY(%s::uuid[]) "
        "AND event_type IN ('ExceptionResolved', 'ExceptionEscalated', 'ExceptionValidationFailed') ORDER BY 1",
        (ids,),
    )
    return [float(r[0]) for r in rows]


def measure_capacity(topology: Topology, args, items: Items) -> dict:
    """Exceptions made terminal per second when the load phase's mix of singles and batches arrives
    faster than the pipeline works: `count` of them over the time from the first one recorded to the
    last one terminal (as bench/soak.py). The mix matters: a single POST starts its own small batches
    through every agent, so the pipeline does fewer exceptions per second when more come singly."""
    ids = work_through(
        topology, args, items, args.capacity_exceptions, batch=args.batch, timeout=900, phase="capacity phase"
    )
    ((first,),) = topology.sql(
        "SELECT extract(epoch FROM min(recorded_at)) FROM exception_event WHERE exception_id = ANY(%s::uuid[])",
        (ids,),
    )
    seconds = terminal_times(topology, ids)[-1] - float(first)
    return {"exceptions": len(ids), "exceptions_per_s": round(len(ids) / seconds, 1), "seconds": round(seconds, 1)}


def warm_up(topology: Topology, args, items: Items, count: int = 200) -> None:
    """With the capacity given, the load would otherwise meet a cold stack: every worker's pool still
    forking and importing, its first batches paying for connections and caches (seconds of CPU that
    are not the load's, and a tail that is not the steady state's). A few exceptions of the mix,
    through every hop, first."""
    work_through(topology, args, items, count, batch=min(args.batch, count // 2), timeout=300, phase="warm-up")


def work_through(
    topology: Topology, args, items: Items, count: int, *, batch: int, timeout: int, phase: str
) -> list[str]:
    """Post `count` exceptions of the load's mix and wait until every one is terminal and the feedback
    agent's hop, which comes after the terminal status, is done too: its work would otherwise be
    counted in the phase that follows. Returns the exceptions' ids."""
    ids = post_all(
        topology, count, single_share=args.single_share, batch=batch,
        singles=args.singles, batchers=args.batchers, items=items,
    )  # fmt: skip
    if not wait_terminal(topology, ids, timeout=timeout):
        raise SystemExit(f"{phase}: {len(topology.not_terminal(ids))} exceptions not terminal after {timeout} s")
    deadline = time.monotonic() + timeout / 3
    while time.monotonic() < deadline and feedback_count(topology, ids) < len(ids):
        time.sleep(1)
    return ids


def feedback_count(topology: Topology, ids: list[str]) -> int:
    ((count,),) = topology.sql(
        "SELECT count(*) FROM exception_event WHERE exception_id = ANY(%s::uuid[]) AND event_type = 'FeedbackCaptured'",
        (ids,),
    )
    return count


# --- CPU by component ------------------------------------------------------------------------------


def descendants() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for line in subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout.splitlines():
        pid, ppid = (int(x) for x in line.split())
        tree.setdefault(ppid, []).append(pid)
    return tree


def component_pids(topology: Topology) -> dict[int, str]:
    """pid -> component of every process of the stack (each supervised program and its children)."""
    tree = descendants()
    own: dict[int, str] = {}
    for name, (_, pid) in topology.status().items():
        group = "api" if name == "web" else "agents" if name in AGENTS else "platform"
        stack = [pid] if pid else []
        while stack:
            p = stack.pop()
            own[p] = group
            stack += tree.get(p, [])
    return own


def cpu_seconds(db: str, own: dict[int, str], procs=None) -> dict[int, tuple[str, float]]:
    """CPU seconds so far per process: the stack's, this client, PostgreSQL (backends of `db` and the
    shared background processes) and RabbitMQ (the shared broker: others' work counts too)."""
    from bench.procstat import processes

    out: dict[int, tuple[str, float]] = {}
    for proc in processes() if procs is None else procs:
        if proc.pid == os.getpid():
            out[proc.pid] = ("client", proc.cpu_seconds)
        elif proc.pid in own:
            out[proc.pid] = (own[proc.pid], proc.cpu_seconds)
        elif proc.is_postgres_backend_of(db) or proc.is_postgres_shared():
            out[proc.pid] = ("postgres", proc.cpu_seconds)
        elif "beam.smp" in proc.comm:
            out[proc.pid] = ("rabbitmq", proc.cpu_seconds)
    return out


def cpu_delta(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    used: Counter = Counter()
    for pid, (group, seconds) in after.items():
        used[group] += seconds - (before[pid][1] if pid in before else 0.0)
    return {k: round(v, 1) for k, v in sorted(used.items())}


# --- the run ---------------------------------------------------------------------------------------


class IngestRun:
    """The stack, its capacity and the open-loop load, in steps: bench/queries.py --while-ingesting
    starts the load, measures its reads, then stops it."""

    def __init__(self, args):
        self.args = args
        services = (SharedPostgres(args.db), SharedRabbit(args.vhost), SharedRedis(args.redis_db))
        self.topology = Topology(services=services, procfile=args.procfile, fast=False, exclude=("flower",))
        self.items = Items()
        self.kinds: dict[str, Kind] = {}
        self.result: dict = {
            "benchmark": "ingest",
            "when": datetime.now(UTC).isoformat(),
            "procfile": str(args.procfile),
            "layout": [line for line in args.procfile.read_text().splitlines() if line[:1].isalpha()],
            "load_average_at_start": load_average(),
        }

    def start(self) -> IngestRun:
        """The stack up, and its capacity measured (or taken from --capacity)."""
        args, topology = self.args, self.topology
        print(f"starting the stack ({args.procfile.name}) ...", flush=True)
        topology.start(timeout=300)
        # Far above the offered rate: the figure is the API's and the pipeline's, not the limiter's.
        topology.sql(
            "UPDATE tenant SET rate_per_second = 100000, burst = 100000, max_in_flight = 10000000 WHERE id = %s",
            (TENANT,),
        )
        time.sleep(3)  # the admission limits are read per process with a short cache
        if args.capacity:
            capacity = {"given": True, "exceptions_per_s": args.capacity}
            warm_up(topology, args, self.items)
        else:
            print(f"capacity: {args.capacity_exceptions} exceptions, the load phase's mix, at once ...", flush=True)
            capacity = measure_capacity(topology, args, self.items)
        self.result["capacity"] = capacity
        return self

    def load_start(self) -> None:
        args, topology = self.args, self.topology
        self.offered = self.result["capacity"]["exceptions_per_s"] * args.load
        single_rate = self.offered * args.single_share
        batch_rate = (self.offered - single_rate) / args.batch
        print(
            f"capacity {self.result['capacity']['exceptions_per_s']} exceptions/s; offering {self.offered:.1f}/s: "
            f"{single_rate:.2f} single POST/s ({args.singles} clients), {batch_rate:.3f} batch POST/s of "
            f"{args.batch} ({args.batchers} clients); load average {load_average()}",
            flush=True,
        )
        self.kinds = {
            "single": Kind("single", port=topology.port, key=topology.key, path=f"/api/exceptions/{TENANT}",
                           size=1, rate=single_rate, threads=args.singles, items=self.items),
            "batch": Kind("batch", port=topology.port, key=topology.key, path=f"/api/exceptions/{TENANT}/batch",
                          size=args.batch, rate=batch_rate, threads=args.batchers, items=self.items),
        }  # fmt: skip
        from bench.procstat import processes

        self.own = component_pids(topology)
        self.load_before = load_average()
        self.busy0 = cpu_busy()
        # Every process's CPU now, told apart at the end: a worker's pool child forked after this
        # moment (or a restarted program) is the stack's too, and counts from here.
        self.procs0 = list(processes())
        self.started, self.wall0 = time.monotonic(), time.time()
        for kind in self.kinds.values():
            kind.start()

    def load_stop(self) -> dict:
        """Stop offering; wait for the pipeline to finish what was accepted; the figures."""
        args, topology = self.args, self.topology
        for kind in self.kinds.values():
            kind.stop.set()
        for kind in self.kinds.values():
            kind.finish()
        elapsed = time.monotonic() - self.started
        wall1 = time.time()
        busy1 = cpu_busy()
        own = {**self.own, **component_pids(topology)}
        cpu0, cpu1 = cpu_seconds(args.db, own, self.procs0), cpu_seconds(args.db, own)
        load_after = load_average()
        ids = [i for kind in self.kinds.values() for i in kind.exception_ids]
        backlog = len(topology.not_terminal(ids))
        drained = wait_terminal(topology, ids, timeout=args.drain_timeout)
        times = terminal_times(topology, ids)
        during = sum(1 for t in times if self.wall0 <= t <= wall1)
        self.result.update(
            {
                "offered_exceptions_per_s": round(self.offered, 1),
                "load": args.load,
                "seconds": round(elapsed, 1),
                "kinds": {name: kind.report(elapsed) for name, kind in self.kinds.items()},
                "pipeline": {
                    "accepted": len(ids),
                    "terminal_during_load_per_s": round(during / elapsed, 1),
                    "backlog_at_end_of_load": backlog,
                    "all_terminal_after_drain": drained,
                    "drain_s": round(max(times) - wall1, 1) if times else None,
                },
                "machine_cpu_utilisation": round((busy1[0] - self.busy0[0]) / (busy1[1] - self.busy0[1]), 3),
                "cpu_seconds_by_component": cpu_delta(cpu0, cpu1),
                "load_average_before": self.load_before,
                "load_average_after": load_after,
            }
        )
        return self.result

    def stop(self) -> None:
        for kind in self.kinds.values():
            kind.stop.set()
        self.topology.stop()


def run(args) -> dict:
    ingest = IngestRun(args)
    try:
        ingest.start().load_start()
        time.sleep(args.seconds)
        return ingest.load_stop()
    finally:
        ingest.stop()


def print_report(r: dict) -> None:
    print(f"layout: {r['procfile']}")
    print(
        f"pipeline capacity {r['capacity']['exceptions_per_s']} exceptions/s; offered {r['offered_exceptions_per_s']}/s "
        f"({r['load']:.0%}) for {r['seconds']} s; completed {r['pipeline']['terminal_during_load_per_s']}/s during "
        f"it, backlog {r['pipeline']['backlog_at_end_of_load']} at its end, drained: "
        f"{r['pipeline']['all_terminal_after_drain']}"
    )
    for name, k in r["kinds"].items():
        due, svc = k["latency_from_due"], k["service_time"]
        verdict = {True: "PASS", False: "FAIL", None: "-"}[k["meets_target"]]
        print(
            f"  {name:6} x{k['exceptions_per_request']:<4} {k['clients']} clients: {k['requests_per_s']} req/s, "
            f"{k['exceptions_per_s']} exceptions/s; p50 {due['p50_ms']} / p90 {due['p90_ms']} / p99 {due['p99_ms']} / "
            f"max {due['max_ms']} ms over {due['n']} (service p50 {svc['p50_ms']} / p99 {svc['p99_ms']}); "
            f"target p99 <= {k['target_p99_ms']} ms: {verdict}; statuses {k['statuses']}"
        )
    print(
        f"  machine CPU {r['machine_cpu_utilisation']:.0%}; CPU seconds {r['cpu_seconds_by_component']}; "
        f"load average {r['load_average_before']} before, {r['load_average_after']} after"
    )


def add_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """The load's options (bench/queries.py takes them as --ingest-<option>)."""

    def option(name: str, **kwargs) -> None:
        parser.add_argument(f"--{prefix}{name}", **kwargs)

    option("singles", type=int, default=8, help="client threads posting single exceptions")
    option("batchers", type=int, default=4, help="client threads posting batches")
    option("batch", type=int, default=100, help="exceptions per batch request")
    option("load", type=float, default=0.5, help="offered share of the pipeline's throughput")
    option("single-share", type=float, default=0.2, help="share of the offered exceptions sent singly")
    option("capacity", type=float, default=None, help="exceptions/s: skip the capacity phase")
    option("capacity-exceptions", type=int, default=3000)
    option("drain-timeout", type=float, default=600)
    option("procfile", type=Path, default=ROOT / "Procfile", help="the process layout to run")
    option("db", default="sentinai_bench_ingest")
    option("vhost", default="sentinai_bench_ingest")
    option("redis-db", type=int, default=9)


def check_arguments(parser: argparse.ArgumentParser, args, prefix: str = "") -> None:
    """Bad options are refused before anything starts."""
    get = lambda name: getattr(args, (prefix + name).replace("-", "_"))  # noqa: E731
    if not 0 < get("load") <= 1 or not 0 <= get("single-share") <= 1 or get("batch") < 1:
        parser.error(f"--{prefix}load in (0, 1], --{prefix}single-share in [0, 1], --{prefix}batch >= 1")
    if not get("procfile").is_file():
        parser.error(f"no such Procfile: {get('procfile')}")
    setattr(args, (prefix + "procfile").replace("-", "_"), get("procfile").resolve())


def options_of(args, prefix: str) -> argparse.Namespace:
    """The load's options out of another script's --<prefix><option> arguments."""
    key = prefix.replace("-", "_")
    return argparse.Namespace(**{k[len(key) :]: v for k, v in vars(args).items() if k.startswith(key)})


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--seconds", type=float, default=180, help="length of the load phase")
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    if args.seconds <= 0:
        parser.error("--seconds > 0")
    return args


def main() -> None:
    args = parse_args()
    out = ROOT / "bench" / "results" / f"ingest-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    result = run(args)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str))
    print_report(result)
    print(f"written to {out / 'result.json'}")


if __name__ == "__main__":
    main()
