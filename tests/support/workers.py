"""Real Celery workers in subprocesses, on the test RabbitMQ vhost and the test database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connections

from config import routing
from tests.support.host import ROOT


def service_env(*, platform: bool = False, **extra: str) -> dict[str, str]:
    """Environment for a subprocess of the platform that uses the test database and broker. It
    connects as the application role (tenant-bound, as agent workers do in production), or with
    `platform` as the platform role (cross-tenant work: scheduler, SLA monitor, relays)."""
    db = connections["default"].settings_dict
    owner = connections["owner"].settings_dict
    role = settings.DB_PLATFORM_ROLE if platform else settings.DB_APP_ROLE
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": f"postgres://{role}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "DATABASE_OWNER_URL": f"postgres://{owner['USER']}@{owner['HOST']}:{owner['PORT']}/{db['NAME']}",
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "REDIS_URL": settings.REDIS_URL,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


class WorkerProcess:
    """`celery -A config worker -Q <queues>` as a child process."""

    def __init__(
        self, queues, *, name="test", pool="solo", concurrency=1, log_dir: Path, agents=None, env=None, exclude=()
    ):
        self.queues = list(queues)
        self.exclude = list(exclude)
        self.name = name
        self.pool = pool
        self.concurrency = concurrency
        self.log_path = log_dir / f"worker-{name}-{int(time.time() * 1000)}.log"
        extra = dict(env or {})
        if agents:
            extra["SENTINAI_AGENT_IMPLEMENTATIONS"] = json.dumps(agents)
        # As in production: a worker on a platform queue works across tenants, an agent worker cannot.
        self.env = service_env(platform=bool(set(self.queues) & set(routing.PLATFORM_QUEUES)), **extra)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> WorkerProcess:
        return self.launch().wait_ready(timeout)

    def launch(self) -> WorkerProcess:
        """Start the process without waiting for it (several workers start faster side by side)."""
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        cmd = [
            sys.executable, "-m", "celery", "-A", "config", "worker",
            "-Q", ",".join(self.queues), "-n", f"{self.name}@%h", "-P", self.pool, "-c", str(self.concurrency),
            "--without-mingle", "--without-gossip", "-l", "INFO",
        ]  # fmt: skip
        if self.exclude:
            cmd += ["-X", ",".join(self.exclude)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout: float = 60) -> WorkerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log()}")
            if " ready." in self.log():
                return self
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def children(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._log.close()

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
