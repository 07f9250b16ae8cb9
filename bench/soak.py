#!/usr/bin/env python
"""Soak: the supervised production topology under HTTP load for N minutes, a random fault every M seconds.

Starts the topology of the fault tests (tests/support/topology.py: `make stack`'s processes under
supervisord, on private PostgreSQL, RabbitMQ and Redis instances of its own), measures its
throughput with the real agents (exceptions made terminal per second while ingest is offered well
above it), then offers --load of that rate for --minutes while doing, every --fault-every seconds, one
of: broker restart, database restart, Redis restart, SIGKILL of an agent worker's main process,
SIGKILL of the dead-letter consumer, SIGKILL of a gunicorn worker. Then it stops the load, waits up
to --settle seconds for every accepted exception to be terminal, and prints

    accepted / finished / lost / doubled / 5xx (undocumented, and the documented 503s) / p99 end-to-end
    latency / the longest time the API accepted nothing

and writes them as JSON under bench/results/. A script, not a test; the services it starts are its own.

    python bench/soak.py [--minutes 10] [--load 0.5] [--fault-every 30] [--capacity EXC_PER_S]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.load import IngestLoad  # noqa: E402
from tests.support.topology import TENANT, Topology  # noqa: E402


def faults(topology: Topology) -> dict:
    agent_workers = [p for p in topology.processes() if p not in ("web", "beat", "dlq", "stream", "flower")]

    def kill_gunicorn_worker():
        workers = topology.children(topology.pid("web"))
        os.kill(random.choice(workers), signal.SIGKILL)

    return {
        "broker restart": lambda: topology.rabbit.restart(down_seconds=3),
        "database restart": lambda: topology.postgres.restart(down_seconds=3),
        "redis restart": lambda: topology.redis.restart(down_seconds=3),
        "worker SIGKILL": lambda: topology.kill(random.choice(agent_workers)),
        "dead-letter consumer SIGKILL": lambda: topology.kill("dlq"),
        "gunicorn worker SIGKILL": kill_gunicorn_worker,
    }


def measure_capacity(topology: Topology, count: int = 300) -> float:
    """Exceptions made terminal per second by the real agents: `count` exceptions ingested as fast as
    the API takes them, divided by the time from the first one recorded to the last one terminal."""
    load = IngestLoad(topology.url(), TENANT, topology.key, rate=100.0, threads=12).start()
    while load.accepted_count() < count:
        time.sleep(0.2)
    report = load.stop(grace=60)
    ids = [a.exception_id for a in report.accepted.values()]
    deadline = time.monotonic() + 600
    while topology.not_terminal(ids) and time.monotonic() < deadline:
        time.sleep(1)
    ((seconds,),) = topology.sql(
        "SELECT extract(epoch FROM max(recorded_at) FILTER (WHERE event_type IN ('ExceptionResolved', "
        "'ExceptionEscalated', 'ExceptionValidationFailed')) - min(recorded_at)) FROM exception_event "
        "WHERE exception_id = ANY(%s::uuid[])",
        (ids,),
    )
    return len(ids) / float(seconds)


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--load", type=float, default=0.5, help="share of the measured throughput offered")
    parser.add_argument("--fault-every", type=float, default=30.0, help="seconds between faults")
    parser.add_argument("--capacity", type=float, help="exceptions/s to take as 100 %% (default: measure it)")
    parser.add_argument("--settle", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    rng_seed = args.seed if args.seed is not None else int(time.time())
    random.seed(rng_seed)

    topology = Topology()
    result: dict = {}
    print(f"starting the supervised topology on private services under {topology.base} ...", flush=True)
    try:
        topology.start()
        capacity = args.capacity or measure_capacity(topology)
        rate = max(0.5, capacity * args.load)
        print(f"capacity {capacity:.1f} exceptions/s; offering {rate:.1f}/s for {args.minutes:g} min", flush=True)
        kinds = faults(topology)
        timeline = []
        load = IngestLoad(topology.url(), TENANT, topology.key, rate=rate, threads=8).start()
        started = time.time()
        end = started + args.minutes * 60
        next_fault = started + args.fault_every
        while time.time() < end:
            time.sleep(max(0.0, min(next_fault, end) - time.time()))
            if time.time() >= end:
                break
            name = random.choice(list(kinds))
            began = time.time()
            try:
                kinds[name]()
                error = None
            except Exception as exc:  # a fault that could not be done is reported, not hidden
                error = f"{type(exc).__name__}: {exc}"
            timeline.append({"at": round(began - started, 1), "fault": name, "took": round(time.time() - began, 1),
                             "error": error})  # fmt: skip
            print(f"  t={began - started:6.1f}s {name}{' FAILED ' + error if error else ''}", flush=True)
            next_fault = began + args.fault_every
        stopped = time.time()
        report = load.stop(grace=120)
        ids = [a.exception_id for a in report.accepted.values()]
        deadline = time.monotonic() + args.settle
        while topology.not_terminal(ids) and time.monotonic() < deadline:
            time.sleep(2)
        open_ids = topology.not_terminal(ids)
        missing = topology.missing(ids)
        doubled = topology.doubled(ids)
        latencies = topology.end_to_end_seconds(ids)
        result = {
            "started_at": datetime.fromtimestamp(started, UTC).isoformat(),
            "minutes": args.minutes,
            "load_share": args.load,
            "capacity_exceptions_per_s": round(capacity, 2),
            "offered_per_s": round(rate, 2),
            "fault_every_s": args.fault_every,
            "seed": rng_seed,
            "faults": timeline,
            "accepted": len(ids),
            "finished": len(ids) - len(open_ids) - missing,
            "lost": len(open_ids) + missing,
            "doubled": len(doubled),
            "given_up_by_client": report.given_up,
            "http_statuses": {str(k): v for k, v in sorted(report.statuses.items())},
            "http_5xx_undocumented": sum(report.undocumented_5xx().values()),
            "http_503_documented": report.statuses.get(503, 0),
            "connection_errors": dict(report.errors),
            "longest_no_accept_s": round(report.longest_gap(started + 1, stopped), 2),
            "e2e_p50_s": percentile(latencies, 0.5),
            "e2e_p99_s": percentile(latencies, 0.99),
            "e2e_max_s": max(latencies) if latencies else None,
            "processes_running_at_end": topology.all_running(),
            "dead_letters": [
                {"source": r[0], "consumer": r[1], "error": r[2], "count": r[3]}
                for r in topology.sql(
                    "SELECT source, consumer, left(error, 160), count(*) FROM dead_letter GROUP BY 1, 2, 3"
                )
            ],
        }
    finally:
        topology.stop()
    if not result:
        raise SystemExit("the soak did not finish")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"soak-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2))
    print(
        f"accepted={result['accepted']} finished={result['finished']} lost={result['lost']} "
        f"doubled={result['doubled']} 5xx={result['http_5xx_undocumented']} (503 documented: "
        f"{result['http_503_documented']}) p99={result['e2e_p99_s']:.2f}s "
        f"longest_no_accept={result['longest_no_accept_s']}s faults={len(result['faults'])}"
    )
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
