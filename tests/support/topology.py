"""The production topology of `make stack`, supervised, on private services (tests/support/services.py):
the Procfile rendered by scripts/supervision.py and run by supervisord, exactly as `make stack` runs
it, after the same migrate and seed_demo steps. Faults are then done to it for real: its PostgreSQL,
RabbitMQ and Redis are restarted, its processes killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

from tests.support.host import ROOT, free_port, unconfigured_env
from tests.support.services import PrivatePostgres, PrivateRabbit, PrivateRedis

BIN = Path(sys.executable).parent
TENANT = "acme-finance"
TERMINAL = ("resolved", "escalated", "invalid")
# The pipeline's milestones: each happens at most once per exception, whatever is redelivered.
ONCE = (
    "ExceptionIngested",
    "ExceptionNormalized",
    "TriageCompleted",
    "PlaybookMatched",
    "PlaybookCompleted",
    "ExceptionResolved",
    "ExceptionEscalated",
    "FeedbackCaptured",
)
# A tick twice a second, and batches a broker lost re-sent after 10 s: faults heal within a test.
FAST = {
    "SENTINAI_SCHEDULER_TICK_SECONDS": "0.5",
    "SENTINAI_SLA_SCAN_SECONDS": "2",
    "SENTINAI_ADMISSION_RECONCILE_SECONDS": "2",
    "SENTINAI_OUTBOX_GRACE_SECONDS": "2",
    "SENTINAI_OUTBOX_REDELIVER_SECONDS": "10",
}


class Topology:
    """`services`: (postgres, rabbit, redis) to run on instead of private ones, e.g. the shared
    services' SharedPostgres/SharedRabbit/SharedRedis for a benchmark (those cannot be faulted).
    `procfile`: another process layout than the repository's Procfile (a benchmark's variant).
    `fast`: the FAST timers (for fault tests); False keeps the settings' defaults, as `make stack`."""

    def __init__(
        self,
        *,
        exclude: tuple[str, ...] = ("flower",),
        env: dict[str, str] | None = None,
        services: tuple | None = None,
        procfile: Path | None = None,
        fast: bool = True,
    ):
        # Not pytest's tmp_path: the postgres OS user must be able to reach its cluster's directory.
        self.base = Path(tempfile.mkdtemp(prefix="sentinai-faults-"))
        os.chmod(self.base, 0o755)
        self.var = self.base / "var"
        if services is None:
            services = (PrivatePostgres(self.base), PrivateRabbit(self.base), PrivateRedis(self.base))
        self.postgres, self.rabbit, self.redis = services
        self.port = free_port()
        self.exclude = exclude
        self.procfile = procfile or ROOT / "Procfile"
        self.fast = fast
        self.extra_env = env or {}
        self.supervisord: subprocess.Popen | None = None
        self.key = ""

    # --- life cycle ---------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = unconfigured_env()
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "config.settings.local",
                "DATABASE_URL": self.postgres.url(),
                # The Procfile's cross-tenant processes connect as the platform role (as make stack).
                "PLATFORM_DATABASE_URL": self.postgres.url("sentinai_platform"),
                "CELERY_BROKER_URL": self.rabbit.url(),
                "REDIS_URL": self.redis.url(),
                # The event stream goes to the shared Kafka (not faulted here), on topics of this run alone.
                "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
                "SENTINAI_KAFKA_TOPIC_TEMPLATE": f"sentinai.faults.{self.base.name[-8:]}.{{tenant}}",
                "SENTINAI_VAR_DIR": str(self.var),
                "PROMETHEUS_MULTIPROC_DIR": str(self.var / "prometheus"),
                "PORT": str(self.port),
                "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
                "PYTHONUNBUFFERED": "1",
                **(FAST if self.fast else {}),
                **self.extra_env,
            }
        )
        return env

    def start(self, timeout: float = 180) -> Topology:
        self.postgres.start()
        self.rabbit.start()
        self.redis.start()
        (self.var / "prometheus").mkdir(parents=True, exist_ok=True)
        env = self.env()
        manage = [str(BIN / "python"), "manage.py"]
        subprocess.run(
            [*manage, "migrate", "--noinput", "-v", "0"], cwd=ROOT, check=True, capture_output=True,
            env={**env, "DATABASE_OWNER_URL": self.postgres.url("sentinai")},
        )  # fmt: skip
        subprocess.run([*manage, "seed_demo"], cwd=ROOT, env=env, check=True, capture_output=True)
        self.key = json.loads((self.var / "demo-keys.json").read_text())[TENANT]
        self.sql(
            f"UPDATE tenant SET rate_per_second = 1000, burst = 2000, max_in_flight = 100000 WHERE id = '{TENANT}'"
        )
        procfile = [
            line
            for line in self.procfile.read_text().splitlines()
            if line[:1].isalpha() and line.split(":", 1)[0] not in self.exclude
        ]
        (self.base / "Procfile").write_text("\n".join(procfile) + "\n")
        conf = subprocess.run(
            [str(BIN / "python"), "scripts/supervision.py", "render", "--procfile", str(self.base / "Procfile"),
             "--var-dir", str(self.var)],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        (self.var / "supervisord.conf").write_text(conf)
        self.supervisord = subprocess.Popen(
            [str(BIN / "supervisord"), "-c", str(self.var / "supervisord.conf")],
            cwd=ROOT, env=env, stdout=(self.base / "supervisord.log").open("a"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.wait_running(timeout)
        return self

    def processes(self) -> list[str]:
        lines = (self.base / "Procfile").read_text().splitlines()
        return [line.split(":", 1)[0] for line in lines if line[:1].isalpha()]

    def status(self) -> dict[str, tuple[str, int]]:
        out = subprocess.run(
            [str(BIN / "supervisorctl"), "-c", str(self.var / "supervisord.conf"), "status"],
            capture_output=True, text=True,
        ).stdout  # fmt: skip
        status = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 2:
                pid = int(parts[3].rstrip(",")) if len(parts) > 3 and parts[2] == "pid" else 0
                status[parts[0]] = (parts[1], pid)
        return status

    def all_running(self) -> bool:
        status = self.status()
        return all(status.get(name, ("?", 0))[0] == "RUNNING" for name in self.processes())

    def wait_running(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.supervisord.poll() is not None:
                raise RuntimeError(f"supervisord exited:\n{self.log('supervisord')[-3000:]}")
            if self.all_running() and self.health() == 200:
                return
            time.sleep(1)
        raise TimeoutError(f"the stack is not up after {timeout}s: {self.status()}\n{self.log('supervisord')[-3000:]}")

    def stop(self) -> None:
        if self.supervisord is not None and self.supervisord.poll() is None:
            self.supervisord.send_signal(signal.SIGTERM)
            try:
                self.supervisord.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.supervisord.kill()
                self.supervisord.wait()
        if self.supervisord is not None:
            self._kill_leftovers(self.supervisord.pid)
        for service in (self.redis, self.rabbit, self.postgres):
            try:
                service.cleanup()
            except Exception as exc:  # cleaning up one must not leave the others running
                print(f"cleanup of {type(service).__name__}: {exc}", file=sys.stderr)

    @staticmethod
    def _kill_leftovers(session: int) -> None:
        """Processes still in supervisord's session (orphans of a SIGKILLed worker's pool)."""
        out = subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True).stdout
        for line in out.splitlines():
            pid, sid = (int(x) for x in line.split())
            if sid == session and pid != os.getpid():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    # --- observing and hurting it -------------------------------------------------------------

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def health(self) -> int:
        try:
            return httpx.get(f"{self.url()}/api/health", timeout=5).status_code
        except httpx.HTTPError:
            return 0

    def pid(self, name: str) -> int:
        return self.status()[name][1]

    def kill(self, name: str) -> int:
        """SIGKILL a process of the stack (its main process); returns the pid killed."""
        pid = self.pid(name)
        assert pid, (name, self.status())
        os.kill(pid, signal.SIGKILL)
        return pid

    def children(self, pid: int) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def log(self, name: str) -> str:
        path = self.var / "log" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def sql(self, statement: str, params: tuple = ()) -> list[tuple]:
        """As the cluster's superuser (row-level security does not bind it): what the tests check."""
        with psycopg.connect(self.postgres.url("postgres"), autocommit=True) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def dependency_gauges(self) -> dict[str, dict[str, float]]:
        """sentinai_dependency_up as each live process last set it: "<pid> <command>" -> {dependency: value}."""
        from prometheus_client.mmap_dict import MmapedDict

        out = {}
        for path in (self.var / "prometheus").glob("gauge_livemin_*.db"):
            pid = path.stem.rsplit("_", 1)[1]
            cmd = Path(f"/proc/{pid}/cmdline")
            name = cmd.read_bytes().replace(b"\0", b" ")[:80].decode() if cmd.exists() else "(dead)"
            values = {}
            for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
                metric, _, labels, *_ = json.loads(key)
                if metric == "sentinai_dependency_up":
                    values[labels["dependency"]] = value
            out[f"{pid} {name}"] = values
        return out

    # --- verdicts on a set of accepted exceptions ------------------------------------------------

    def not_terminal(self, ids: list[str]) -> list[tuple]:
        return self.sql(
            "SELECT id, status FROM exception WHERE id = ANY(%s::uuid[]) AND status <> ALL(%s)", (ids, list(TERMINAL))
        )

    def missing(self, ids: list[str]) -> int:
        """Accepted exceptions with no row at all (lost)."""
        found = self.sql("SELECT count(*) FROM exception WHERE id = ANY(%s::uuid[])", (ids,))[0][0]
        return len(set(ids)) - found

    def doubled(self, ids: list[str]) -> list[tuple]:
        """(exception, event type, count) of ONCE events recorded more than once, and exceptions whose
        tool executions and ToolExecutionRequested events disagree."""
        twice = self.sql(
            "SELECT exception_id::text, event_type, count(*) FROM exception_event "
            "WHERE exception_id = ANY(%s::uuid[]) AND event_type = ANY(%s) GROUP BY 1, 2 HAVING count(*) > 1",
            (ids, list(ONCE)),
        )
        tools = self.sql(
            "SELECT e.exception_id::text, 'ToolExecutionRequested', count(*) FROM exception_event e "
            "WHERE e.exception_id = ANY(%s::uuid[]) AND e.event_type = 'ToolExecutionRequested' GROUP BY e.exception_id "
            "HAVING count(*) <> (SELECT count(*) FROM tool_execution t WHERE t.exception_id = e.exception_id)",
            (ids,),
        )
        return twice + tools

    def end_to_end_seconds(self, ids: list[str]) -> list[float]:
        """ExceptionIngested recorded -> its terminal event recorded, per terminal exception."""
        rows = self.sql(
            "SELECT extract(epoch FROM max(e.recorded_at) FILTER (WHERE e.event_type IN "
            "('ExceptionResolved', 'ExceptionEscalated', 'ExceptionValidationFailed')) "
            "- min(e.recorded_at)) FROM exception_event e WHERE e.exception_id = ANY(%s::uuid[]) GROUP BY e.exception_id",
            (ids,),
        )
        return [float(r[0]) for r in rows if r[0] is not None]

    def operator_key(self) -> str:
        keys = json.loads((self.var / "demo-keys.json").read_text())
        return next(v for k, v in keys.items() if k.endswith(":operator"))

    def metric(self, name: str, **labels: str) -> float | None:
        """A sample of GET /metrics (summed over the host's processes), read with the operator's key."""
        headers = {"Authorization": f"Bearer {self.operator_key()}"}
        text = httpx.get(f"{self.url()}/metrics", headers=headers, timeout=10).text
        wanted = "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
        for line in text.splitlines():
            if line.startswith(name + wanted + " ") or (not labels and line.startswith(name + " ")):
                return float(line.rsplit(" ", 1)[1])
        return None
