#!/usr/bin/env python
"""Horizontal scale, demonstrated (`make bench-scale`): an I/O-bound agent scaled by adding worker
processes, then by adding a host.

The pipeline is the product's: the API under gunicorn, the real agents (intake, triage, policy,
playbook, resolution, feedback, tool, and the scheduler with beat), on PostgreSQL, RabbitMQ and Redis
of this run alone. The tenant is on the finance pack with its three settlement tools (look up the
counterparty, retry the settlement, tell the desk) overridden, as a tenant would, to **HTTP tools**
served by bench/toolserver.py, which answers every call after 50 ms (--tool-delay): each settlement
failure makes three calls of 50 ms. Each tool worker is a synchronous tool client: `-P threads -c 1`,
one call in flight (SENTINAI_TOOL_PARALLEL_CALLS=1), and the tool queue's messages carry 4 events
(SENTINAI_AGENT_BATCH_SIZES={"tool": 4}, --tool-batch; with the default 500 one worker holds a
backlog its idle peers cannot take; with 1 or 2 every hop after the tool's runs batches that small
and the machine's CPU, not the tool, sets the pace): a worker's throughput is bounded by the tool's latency (at most
20 calls/s), not by its CPU — the agent for which adding processes, anywhere, adds throughput, as
long as the machine has CPU left for them and for the rest of the pipeline.

(a) **Processes**: the other agents fixed (one worker each, the Procfile's `-c 2`), 1, 2, 4 and 8
worker processes on the `tool` queue. (b) **Hosts**: every agent worker runs in a network namespace
of its own address (10.77.0.11, .12, ...) on a bridge, reaching PostgreSQL, RabbitMQ, Redis and the
tool server at 10.77.0.1 over veth; host 1 runs all the agents with --host-tools (2) tool workers,
then host 2 is added with as many tool workers and nothing else. The namespaces share this
machine's two cores: a host adds addresses and processes, not CPU.

Each point: the tool workers start and join the queue; a closed-loop client keeps 16 open exceptions
per tool call in flight (plus 16) posted through `POST /api/exceptions/{tenant}/batch` (8 per
request); after --warmup seconds, tool calls completed (tool_execution rows succeeded) are counted
over --seconds, with the cores each component used (from /proc: tool workers, the other agents, API,
PostgreSQL, RabbitMQ, Redis, tool server, this client) and what waited where (tool executions
requested / running, queue depths); then the client stops, the pipeline drains and the tool workers
stop. The tool server's counts say whether any execution was called twice and which addresses
called it.

Printed and written to bench/results/scale-<time>/result.json, with scale.png (matplotlib). Needs
root for the network namespaces (`ip netns`); --no-hosts runs (a) alone. The bridge and namespaces
have fixed names (sntai0, sentinai-h1 …): one run per machine at a time.

    python bench/scale.py [--processes 1,2,4,8] [--seconds 30] [--host-tools 2] [--tool-batch 4] [--no-hosts]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pipeline import ApiClient, cpu_busy, scenario_item, wait_http  # noqa: E402
from tests.support.host import free_port, unconfigured_env  # noqa: E402
from tests.support.services import PrivatePostgres, PrivateRabbit, PrivateRedis  # noqa: E402

TENANT = "scale-finance"
FIXED = ["intake", "triage", "policy", "playbook", "resolution", "feedback"]
TOOLS = ("lookup_counterparty", "retry_settlement", "notify_desk")
CALLS_PER_EXCEPTION = len(TOOLS)  # a medium settlement failure runs the three tools, one after another
BRIDGE = "sntai0"
SERVICE_ADDRESS = "10.77.0.1"
TOOL_WORKER_ENV = {"SENTINAI_TOOL_PARALLEL_CALLS": "1"}


class Network:
    """A bridge in this namespace holding SERVICE_ADDRESS, and `hosts` network namespaces
    sentinai-h1 … with a veth each, addressed 10.77.0.11 …: separate hosts to the services."""

    def __init__(self, hosts: int):
        self.hosts = hosts

    @staticmethod
    def namespace(host: int) -> str:
        return f"sentinai-h{host}"

    @staticmethod
    def address(host: int) -> str:
        return f"10.77.0.{10 + host}"

    def commands(self) -> list[list[str]]:
        cmds = [
            ["ip", "link", "add", BRIDGE, "type", "bridge"],
            ["ip", "addr", "add", f"{SERVICE_ADDRESS}/24", "dev", BRIDGE],
            ["ip", "link", "set", BRIDGE, "up"],
        ]
        for host in range(1, self.hosts + 1):
            ns, veth = self.namespace(host), f"sntai-h{host}"
            cmds += [
                ["ip", "netns", "add", ns],
                ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns],
                ["ip", "link", "set", veth, "master", BRIDGE, "up"],
                ["ip", "-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", "eth0"],
                ["ip", "-n", ns, "link", "set", "eth0", "up"],
                ["ip", "-n", ns, "link", "set", "lo", "up"],
            ]
        return cmds

    def up(self) -> None:
        self.down()
        for cmd in self.commands():
            subprocess.run(cmd, check=True, capture_output=True)

    def down(self) -> None:
        for host in range(1, self.hosts + 1):  # a namespace's veth goes with it
            subprocess.run(["ip", "netns", "del", self.namespace(host)], capture_output=True)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)

    def prefix(self, host: int | None) -> list[str]:
        return [] if host is None else ["ip", "netns", "exec", self.namespace(host)]


def steady_rate(samples: list[tuple[float, int]], start: float, end: float) -> float:
    """Completions per second between the samples nearest to `start` and `end` (seconds)."""
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return 0.0
    (t0, c0), (t1, c1) = inside[0], inside[-1]
    return (c1 - c0) / (t1 - t0)


class Platform:
    """This run's services, schema, tenant, tool server and API; agent workers started on demand,
    in this namespace (host None) or in a network namespace host."""

    def __init__(self, args):
        self.args = args
        self.base = Path(tempfile.mkdtemp(prefix="sentinai-scale-"))
        os.chmod(self.base, 0o755)  # the postgres OS user reaches its cluster's directory
        self.var = self.base / "var"
        (self.var / "prometheus").mkdir(parents=True)
        self.logs = args.log_dir
        self.network = Network(args.hosts) if args.hosts else None
        listen = SERVICE_ADDRESS if self.network else None
        self.postgres = PrivatePostgres(self.base, also_listen=listen)
        self.rabbit = PrivateRabbit(self.base, also_listen=listen)
        self.redis = PrivateRedis(self.base, also_listen=listen)
        self.tool_address = SERVICE_ADDRESS if self.network else "127.0.0.1"
        self.tool_port = free_port()
        self.api_port = free_port()
        self.procs: list[subprocess.Popen] = []
        self.groups: dict[int, str] = {os.getpid(): "bench client"}  # root pid -> component
        self.key = ""

    # --- life cycle ---------------------------------------------------------------------------
    def env(self, host: int | None = None, *, platform: bool = False, **extra: str) -> dict[str, str]:
        address = "127.0.0.1" if host is None else SERVICE_ADDRESS
        env = unconfigured_env()
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "config.settings.local",
                "DATABASE_URL": self.postgres.url("sentinai_platform" if platform else "sentinai_app", host=address),
                "PLATFORM_DATABASE_URL": self.postgres.url("sentinai_platform", host=address),
                "CELERY_BROKER_URL": self.rabbit.url(host=address),
                "REDIS_URL": self.redis.url(host=address),
                "KAFKA_BOOTSTRAP_SERVERS": "",
                "SENTINAI_VAR_DIR": str(self.var),
                "PROMETHEUS_MULTIPROC_DIR": str(self.var / "prometheus"),
                "LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
                # Every process, since the playbook agent's outbox cuts the tool queue's messages.
                "SENTINAI_AGENT_BATCH_SIZES": json.dumps({"tool": self.args.tool_batch}),
                **extra,
            }
        )
        return env

    def start(self) -> Platform:
        started = time.monotonic()
        if self.network:
            self.network.up()
        # RabbitMQ's node boots while PostgreSQL starts and is migrated (each takes seconds).
        with ThreadPoolExecutor(2) as pool:
            broker = pool.submit(lambda: (self.rabbit.start(), self.redis.start()))
            self.postgres.start()
            manage = [sys.executable, "manage.py"]
            subprocess.run(
                [*manage, "migrate", "--noinput", "-v", "0"], cwd=ROOT, check=True,
                env={**self.env(), "DATABASE_OWNER_URL": self.postgres.url("sentinai")},
            )  # fmt: skip
            broker.result()
        self._tenant()
        self.spawn(
            "toolserver",
            [sys.executable, "bench/toolserver.py", "--host", self.tool_address, "--port", str(self.tool_port),
             "--delay", str(self.args.tool_delay)],
            group="tool server",
        )  # fmt: skip
        self.spawn(
            "gunicorn",
            [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{self.api_port}",
             "--workers", "2", "--threads", "4"],
            platform=True, group="api",
        )  # fmt: skip
        wait_http(self.api_port)
        print(f"[setup] services, schema, tenant and API ready in {time.monotonic() - started:.0f} s", flush=True)
        return self

    def _tenant(self) -> None:
        """The finance pack with its settlement tools overridden to HTTP tools on the tool server (the
        tenant allows exactly that address: the SSRF guard refuses internal addresses otherwise)."""
        os.environ.update(self.env(platform=True))
        import django

        django.setup()
        from sentinai.tenancy.services import api_key_create, tenant_create_or_update

        url = f"http://{self.tool_address}:{self.tool_port}"
        tenant, _ = tenant_create_or_update(
            tenant_id=TENANT,
            domain_pack="finance",
            rate_per_second=1e6,
            burst=1_000_000,
            max_in_flight=10_000_000,
            overrides={
                "allowed_hosts": [f"{self.tool_address}:{self.tool_port}"],
                "allowed_cidrs": [f"{self.tool_address}/32"],
                "tools": {
                    name: {"kind": "http", "url": f"{url}/{name}", "timeout_seconds": 5, "max_attempts": 3}
                    for name in TOOLS
                },
            },
        )
        _, self.key = api_key_create(tenant=tenant, name="scale-bench", scopes=["ingest", "read"])

    def spawn(
        self,
        name: str,
        cmd: list[str],
        *,
        host: int | None = None,
        platform: bool = False,
        group: str = "agents",
        **extra: str,
    ) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("w")
        prefix = self.network.prefix(host) if self.network else []
        proc = subprocess.Popen(
            [*prefix, *cmd], cwd=ROOT, env=self.env(host, platform=platform, **extra), stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.procs.append(proc)
        self.groups[proc.pid] = group
        return proc

    def worker(
        self, name: str, queue: str, *, host: int | None = None, pool: str = "prefork", concurrency: int = 2,
        platform: bool = False, **extra: str,
    ) -> subprocess.Popen:  # fmt: skip
        return self.spawn(
            name,
            ["nice", "-n", "10", sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queue,
             "-n", f"{name}@scale", "-P", pool, "-c", str(concurrency), "--without-mingle", "--without-gossip",
             "-l", "WARNING"],
            host=host, platform=platform, **extra,
        )  # fmt: skip

    def start_fixed(self, host: int | None = None) -> list[subprocess.Popen]:
        """Every agent but the tool, one worker each as in the Procfile, and the scheduler with beat."""
        where = "" if host is None else f"-h{host}"
        procs = [self.worker(f"{agent}{where}", agent, host=host) for agent in FIXED]
        procs.append(self.worker(f"scheduler{where}", "scheduler", host=host, concurrency=1, platform=True))
        procs.append(
            self.spawn(
                f"beat{where}",
                [
                    "nice",
                    "-n",
                    "10",
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    "beat",
                    "-l",
                    "WARNING",
                    "-s",
                    str(self.var / f"beat-schedule{where}"),
                ],
                host=host,
                platform=True,
            )  # fmt: skip
        )
        self.wait_consumers(dict.fromkeys(FIXED, 1))
        return procs

    def start_tools(self, placement: list[tuple[int | None, int]], label: str) -> list[subprocess.Popen]:
        procs = []
        for host, count in placement:
            for n in range(count):
                where = "" if host is None else f"-h{host}"
                procs.append(
                    self.worker(f"tool{where}-{label}-{n}", "tool", host=host, pool="threads", concurrency=1,
                                group="tool workers", **TOOL_WORKER_ENV)
                )  # fmt: skip
        self.wait_consumers({"tool": sum(count for _, count in placement)})
        return procs

    def wait_consumers(self, wanted: dict[str, int], timeout: float = 180) -> None:
        """Until each agent's first lane has (at least) that many consumers: the workers are in."""
        from kombu import Connection

        from config import routing

        deadline, counts = time.monotonic() + timeout, {}
        while time.monotonic() < deadline:
            # A connection per poll: a passive declare of a queue not declared yet closes its channel.
            with Connection(self.rabbit.url()) as broker:
                try:
                    channel = broker.default_channel
                    counts = {
                        a: channel.queue_declare(routing.agent_lanes(a)[0], passive=True).consumer_count for a in wanted
                    }
                except Exception:  # not declared yet: its workers are not up
                    counts = {}
            if all(counts.get(a, 0) >= n for a, n in wanted.items()):
                return
            self.check_alive()
            time.sleep(0.5)
        raise TimeoutError(f"workers not consuming after {timeout}s: wanted {wanted}, saw {counts}")

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None and proc.returncode not in (0, -signal.SIGTERM):
                raise SystemExit(f"a process exited ({' '.join(map(str, proc.args[:12]))}); see {self.logs}")

    @staticmethod
    def stop_procs(procs: list[subprocess.Popen]) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT if "gunicorn" in proc.args else signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self) -> None:
        self.stop_procs(self.procs)
        for service in (self.redis, self.rabbit, self.postgres):
            service.cleanup()
        if self.network:
            self.network.down()
        shutil.rmtree(self.base, ignore_errors=True)

    # --- probes -------------------------------------------------------------------------------
    def cpu_by_component(self) -> dict[str, float]:
        """CPU seconds so far per component: each process this run started, with its children (prefork
        pools, gunicorn's workers), and the services' process trees."""
        from bench import procstat

        roots = dict(self.groups)
        postmaster = self.postgres.data / "postmaster.pid"
        if postmaster.exists():
            roots[int(postmaster.read_text().split()[0])] = "postgresql"
        for service, group in ((self.rabbit, "rabbitmq"), (self.redis, "redis")):
            if service.proc is not None:
                roots[service.proc.pid] = group
        return procstat.cpu_by_ancestor(roots)

    def tool_stats(self) -> dict:
        import httpx

        return httpx.get(f"http://{self.tool_address}:{self.tool_port}/stats", timeout=10).json()


class Probe:
    """One PostgreSQL connection (the superuser's: it reads across tenants) and one broker connection
    for a point's samples, rather than new ones for every read."""

    def __init__(self, platform: Platform):
        import psycopg
        from kombu import Connection

        self.db = psycopg.connect(platform.postgres.url("postgres", db="sentinai"), autocommit=True)
        self.broker = Connection(platform.rabbit.url())

    def open_exceptions(self) -> int:
        return self.db.execute("SELECT count(*) FROM exception WHERE closed_at IS NULL").fetchone()[0]

    def sample(self) -> tuple[int, dict[str, int]]:
        """Tool calls completed so far, and what waits where: open exceptions by status, executions
        requested or running, messages ready on the tool and playbook lanes."""
        from config import routing

        rows = self.db.execute(
            "SELECT 'completed', count(*) FILTER (WHERE status = 'succeeded') FROM tool_execution "
            "UNION ALL SELECT 'execution ' || status, count(*) FROM tool_execution "
            "WHERE status IN ('requested', 'running') GROUP BY status "
            "UNION ALL SELECT 'exception ' || status, count(*) FROM exception WHERE closed_at IS NULL GROUP BY status"
        ).fetchall()
        waiting = dict(rows)
        completed = waiting.pop("completed")
        channel = self.broker.default_channel
        for agent in ("tool", "playbook"):
            waiting[agent] = sum(
                channel.queue_declare(lane, passive=True).message_count for lane in routing.agent_lanes(agent)
            )
        return completed, waiting

    def close(self) -> None:
        self.db.close()
        self.broker.release()


class Point:
    """One measurement: tool workers placed on hosts, the closed-loop client, completions counted."""

    def __init__(self, platform: Platform, label: str, placement: list[tuple[int | None, int]]):
        self.platform = platform
        self.args = platform.args
        self.label = label
        self.placement = placement
        self.processes = sum(count for _, count in placement)
        self.window = 16 * self.processes + 16
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.open = 0
        self.posted = 0
        self.errors: list[str] = []
        self.samples: list[tuple[float, int]] = []
        self.depths: list[tuple[float, dict[str, int]]] = []

    def _sampler(self, probe: Probe, started: float) -> None:
        while not self.stopping.is_set():
            completed, waiting = probe.sample()
            now = time.monotonic() - started
            with self.lock:
                self.open = sum(n for what, n in waiting.items() if what.startswith("exception "))
            self.samples.append((now, completed))
            self.depths.append((now, waiting))
            time.sleep(0.25)

    def _client(self) -> None:
        client = ApiClient(self.platform.api_port, self.platform.key)
        try:
            while not self.stopping.is_set():
                with self.lock:
                    # Room in the window, and numbers no other client thread takes (distinct source refs).
                    first = self.posted if self.open + 8 <= self.window else None
                    if first is not None:
                        self.posted += 8
                        self.open += 8  # until the sampler's next count
                if first is None:
                    time.sleep(0.02)
                    continue
                items = [scenario_item("settlement_medium", first + i, f"scale-{self.label}") for i in range(8)]
                status, body, _ = client.post(f"/api/exceptions/{TENANT}/batch", {"items": items})
                if status != 202 or body.get("accepted") != len(items):
                    raise RuntimeError(f"batch ingest answered {status}: {str(body)[:300]}")
        except Exception as exc:  # a thread's exception would end it silently: the point reports it
            self.errors.append(f"client: {exc}")
            self.stopping.set()

    def run(self) -> dict:
        platform, args = self.platform, self.args
        print(f"[{self.label}] starting {self.processes} tool worker(s): {self.placement}", flush=True)
        tools = platform.start_tools(self.placement, self.label)
        before = platform.tool_stats()
        started, probe = time.monotonic(), Probe(platform)
        threads = [threading.Thread(target=self._sampler, args=(probe, started), daemon=True)]
        threads += [threading.Thread(target=self._client, daemon=True) for _ in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(args.warmup)
        busy0, cpu0, window_start = cpu_busy(), platform.cpu_by_component(), time.monotonic()
        time.sleep(args.seconds)
        busy1, cpu1, window_end = cpu_busy(), platform.cpu_by_component(), time.monotonic()
        self.stopping.set()
        for thread in threads:
            thread.join(timeout=30)
        if self.errors:
            probe.close()
            platform.stop_procs(tools)
            raise SystemExit(f"[{self.label}] {self.errors[0]}")
        rate = steady_rate(self.samples, args.warmup, args.warmup + args.seconds)
        inside = [(t, d) for t, d in self.depths if args.warmup <= t <= args.warmup + args.seconds]
        drained = self._drain(probe)
        probe.close()
        after = platform.tool_stats()
        platform.stop_procs(tools)
        calls = after["requests"] - before["requests"]
        keys = after["idempotency_keys"] - before["idempotency_keys"]
        result = {
            "label": self.label,
            "tool_processes": self.processes,
            "placement": [{"host": host, "tool_workers": count} for host, count in self.placement],
            "tool_calls_per_second": round(rate, 1),
            "exceptions_per_minute": round(rate * 60 / CALLS_PER_EXCEPTION),
            "ideal_calls_per_second": round(self.processes / args.tool_delay, 1),
            "machine_cpu_busy": round((busy1[0] - busy0[0]) / max(1e-9, busy1[1] - busy0[1]), 3),
            # Where the work waited over the window: open exceptions by status, executions requested or
            # running, messages ready on the tool and playbook lanes.
            "waiting_mean": {
                what: round(sum(d.get(what, 0) for _, d in inside) / max(1, len(inside)), 1)
                for what in sorted({k for _, d in inside for k in d})
            },
            # Cores used per component over the counted window (a component's processes that ended
            # meanwhile are left out; none does here).
            "cores_by_component": {
                group: round((cpu1[group] - cpu0.get(group, 0.0)) / (window_end - window_start), 3)
                for group in sorted(cpu1)
            },
            "cpu_ms_per_tool_call": {
                group: round(
                    (cpu1[group] - cpu0.get(group, 0.0)) * 1000 / max(1, rate * (window_end - window_start)), 2
                )
                for group in sorted(cpu1)
            },
            "posted": self.posted,
            "drained": drained,
            "tool_requests": calls,
            "second_attempts": calls - keys,
            "max_calls_in_flight": after["max_in_flight"],
            # Who made the calls: the tool workers' addresses (a network-namespace host's own).
            "calls_by_client": {
                address: n - before["clients"].get(address, 0)
                for address, n in after["clients"].items()
                if n > before["clients"].get(address, 0)
            },
        }
        print(
            f"[{self.label}] {result['tool_calls_per_second']} tool calls/s with {self.processes} process(es) "
            f"(ideal {result['ideal_calls_per_second']}), machine {result['machine_cpu_busy']:.0%} busy, "
            f"{result['second_attempts']} second attempts",
            flush=True,
        )
        return result

    @staticmethod
    def _drain(probe: Probe, timeout: float = 180) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if probe.open_exceptions() == 0:
                return True
            time.sleep(0.5)
        return False


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2 if result["hosts"] else 1, figsize=(11 if result["hosts"] else 6, 4.2), squeeze=False)
    ax = axes[0][0]
    points = result["processes"]
    xs = [p["tool_processes"] for p in points]
    ax.plot(xs, [p["tool_calls_per_second"] for p in points], "o-", label="measured")
    ax.plot(xs, [p["ideal_calls_per_second"] for p in points], "--", color="grey", label="ideal (processes / 50 ms)")
    ax.set(xlabel="worker processes on the tool queue", ylabel="tool calls / s", xticks=xs,
           title="(a) tool agent, one call in flight per process")  # fmt: skip
    ax.grid(alpha=0.3)
    busy = ax.twinx()
    busy.plot(xs, [100 * p["machine_cpu_busy"] for p in points], "s:", color="#c44e52", label="machine CPU busy")
    busy.set(ylabel="machine CPU busy (%)", ylim=(0, 105))
    lines, labels = ax.get_legend_handles_labels()
    more, more_labels = busy.get_legend_handles_labels()
    ax.legend(lines + more, labels + more_labels, loc="upper left")
    if result["hosts"]:
        ax = axes[0][1]
        labels = [f"{len(p['placement'])} host(s)\n{p['tool_processes']} tool workers" for p in result["hosts"]]
        bars = ax.bar(labels, [p["tool_calls_per_second"] for p in result["hosts"]], color=["#4c72b0", "#55a868"])
        ax.bar_label(bars, fmt="%.0f")
        ax.set(ylabel="tool calls / s", title="(b) adding a host (network namespaces over veth)")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--processes", default="1,2,4,8", help="tool worker counts of (a) (default 1,2,4,8; '' skips (a))"
    )
    parser.add_argument("--host-tools", type=int, default=2, help="tool workers per host in (b) (default 2)")
    parser.add_argument("--no-hosts", dest="hosts", action="store_const", const=0, default=2,
                        help="skip (b), the network-namespace hosts")  # fmt: skip
    parser.add_argument(
        "--tool-batch", type=int, default=4, help="events per tool message (SENTINAI_AGENT_BATCH_SIZES; default 4)"
    )
    parser.add_argument("--seconds", type=float, default=30, help="measured seconds per point (default 30)")
    parser.add_argument("--warmup", type=float, default=8, help="seconds before counting (default 8)")
    parser.add_argument("--tool-delay", type=float, default=0.05, help="the tool server's answer time (default 0.05)")
    parser.add_argument("--out", type=Path, default=None, help="results directory (default bench/results/scale-<time>)")
    args = parser.parse_args(argv)
    args.process_counts = [int(n) for n in args.processes.split(",") if n]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    args.log_dir = args.out or ROOT / "bench" / "results" / f"scale-{stamp}"
    args.log_dir.mkdir(parents=True, exist_ok=True)
    if args.hosts and os.geteuid() != 0:
        parser.error("(b) makes network namespaces and needs root; run as root or pass --no-hosts")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    platform = Platform(args)
    result: dict = {"config": {k: str(v) for k, v in vars(args).items()}, "processes": [], "hosts": []}
    try:
        platform.start()
        if args.process_counts:
            fixed = platform.start_fixed()
            for count in args.process_counts:
                result["processes"].append(Point(platform, f"p{count}", [(None, count)]).run())
            platform.stop_procs(fixed)
        if args.hosts:
            fixed = platform.start_fixed(host=1)
            result["hosts"].append(Point(platform, "h1", [(1, args.host_tools)]).run())
            result["hosts"].append(Point(platform, "h1+h2", [(1, args.host_tools), (2, args.host_tools)]).run())
            platform.stop_procs(fixed)
    finally:
        platform.stop()
    points = result["processes"]
    if len(points) > 1 and points[0]["tool_calls_per_second"]:
        result["ratio_max_vs_min_processes"] = round(
            points[-1]["tool_calls_per_second"] / points[0]["tool_calls_per_second"], 2
        )
    if len(result["hosts"]) == 2 and result["hosts"][0]["tool_calls_per_second"]:
        result["ratio_two_hosts_vs_one"] = round(
            result["hosts"][1]["tool_calls_per_second"] / result["hosts"][0]["tool_calls_per_second"], 2
        )
    (args.log_dir / "result.json").write_text(json.dumps(result, indent=2))
    try:
        plot(result, args.log_dir / "scale.png")
        result["plot"] = str(args.log_dir / "scale.png")
    except ImportError:
        print("matplotlib is not installed (requirements-bench.txt): no plot", file=sys.stderr)
    report(result)
    return result


def report(result: dict) -> None:
    print("\n(a) tool worker processes (other agents fixed, one call in flight per process)")
    for p in result["processes"]:
        print(
            f"  {p['tool_processes']:>2} process(es): {p['tool_calls_per_second']:>7.1f} tool calls/s "
            f"({p['exceptions_per_minute']:>6,} exceptions/min), ideal {p['ideal_calls_per_second']:.0f}, "
            f"machine {p['machine_cpu_busy']:.0%} busy"
        )
    if "ratio_max_vs_min_processes" in result:
        first, last = result["processes"][0], result["processes"][-1]
        print(f"  {last['tool_processes']} vs {first['tool_processes']}: x{result['ratio_max_vs_min_processes']}")
    if result["hosts"]:
        print("(b) hosts (network namespaces, services over veth)")
        for p in result["hosts"]:
            print(
                f"  {p['label']:>6}: {p['tool_calls_per_second']:>7.1f} tool calls/s, {p['tool_processes']} tool workers"
            )
        if "ratio_two_hosts_vs_one" in result:
            print(f"  two hosts vs one: x{result['ratio_two_hosts_vs_one']}")
    seconds = sum(p["second_attempts"] for p in result["processes"] + result["hosts"])
    print(f"second attempts of a tool execution: {seconds}")
    if result.get("plot"):
        print(f"plot: {result['plot']}")


if __name__ == "__main__":
    main()
