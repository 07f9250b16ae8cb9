"""The production topology in miniature for end-to-end tests: a worker on the agent queues (as the
tenant-bound application role), one on the platform queues (SLA monitor, scheduler: the platform
role), and celery beat, as subprocesses on the test database and vhost."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from config import routing
from tests.support.host import ROOT
from tests.support.workers import WorkerProcess, service_env

FAST_SCHEDULE = {
    "SENTINAI_SCHEDULER_TICK_SECONDS": "0.5",
    "SENTINAI_SLA_SCAN_SECONDS": "1",
    "SENTINAI_ADMISSION_RECONCILE_SECONDS": "1",
    "SENTINAI_OUTBOX_GRACE_SECONDS": "2",
    "SENTINAI_RETRY_POLICIES": '{"tool": {"base_seconds": 0.3, "factor": 2, "cap_seconds": 5, "max_attempts": 10}}',
}


class Platform:
    """By default one worker (4 threads) consumes every agent queue and one the platform queues. `per_agent=True` runs the Procfile's
    topology instead: one worker per agent queue (`-Q <agent>`, i.e. all the agent's lanes; 2
    processes each, the tool agent 4 threads) and the scheduler's; `exclude` is passed to each as `-X`, and
    `extra` workers (e.g. a tenant's own, on its dedicated lanes) start with them."""

    def __init__(
        self,
        log_dir: Path,
        env: dict | None = None,
        *,
        per_agent: bool = False,
        exclude: tuple[str, ...] = (),
        extra: tuple[tuple[str, list[str]], ...] = (),
    ):
        self.env = {**FAST_SCHEDULE, **(env or {})}
        log_dir.mkdir(parents=True, exist_ok=True)
        if per_agent:
            self.workers = [
                WorkerProcess(
                    [queue],
                    name=queue,
                    pool="threads" if queue == "tool" else "prefork",
                    concurrency=4 if queue == "tool" else 2,
                    log_dir=log_dir,
                    env=self.env,
                    exclude=exclude,
                )
                for queue in (*routing.AGENTS, routing.SCHEDULER_QUEUE)
            ]
        else:
            # The agents' worker holds the tenant-bound application role, the platform queues'
            # worker the platform role (tests/support/workers.py), as in production.
            self.workers = [
                WorkerProcess(
                    [q for q in routing.AGENTS if q not in routing.PLATFORM_QUEUES],
                    name="agents",
                    pool="threads",
                    concurrency=4,
                    log_dir=log_dir,
                    env=self.env,
                ),
                WorkerProcess(
                    list(routing.PLATFORM_QUEUES),
                    name="platform",
                    pool="threads",
                    concurrency=2,
                    log_dir=log_dir,
                    env=self.env,
                ),
            ]
        self.workers += [
            WorkerProcess(queues, name=name, pool="threads", concurrency=4, log_dir=log_dir, env=self.env)
            for name, queues in extra
        ]
        self.worker = self.workers[0]
        self.log_dir = log_dir
        self.beat: subprocess.Popen | None = None

    def start(self) -> Platform:
        for worker in self.workers:
            worker.launch()
        for worker in self.workers:
            worker.wait_ready(120)
        log = (self.log_dir / "beat.log").open("w")
        self.beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "beat", "-s", str(self.log_dir / "beat-schedule"), "--max-interval", "1"],
            cwd=ROOT, env=service_env(**self.env), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        time.sleep(1)
        if self.beat.poll() is not None:
            raise RuntimeError((self.log_dir / "beat.log").read_text())
        return self

    def stop(self) -> None:
        if self.beat is not None and self.beat.poll() is None:
            self.beat.terminate()
            self.beat.wait(timeout=20)
        for worker in self.workers:
            worker.stop()

    def logs(self) -> str:
        return "".join(worker.log() for worker in self.workers) + (self.log_dir / "beat.log").read_text()

    def __enter__(self) -> Platform:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
