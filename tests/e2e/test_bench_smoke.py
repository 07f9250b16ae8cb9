"""A tiny run of the pipeline benchmark's harness (bench/pipeline.py), so a change that breaks it is
seen in `make test`, not on the day of a measurement. No figure is asserted: performance is measured
by the bench, never by tests. It runs on its own database next to the test database and on the test
vhost, with the real agents behind gunicorn, and no Kafka relay (the stream has its own tests).
About 25 s; the first run after a migration changed also migrates the bench's template database."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from urllib.parse import urlparse

from django.conf import settings
from django.db import connections

from tests.support.host import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_pipeline_bench_drives_exceptions_through_the_http_api_and_the_real_agents():
    database = f"{connections['default'].settings_dict['NAME']}_bench"
    vhost = urlparse(settings.CELERY_BROKER_URL).path.lstrip("/") or "/"
    redis_db = urlparse(settings.REDIS_URL).path.lstrip("/") or "0"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DJANGO_SETTINGS"))}
    proc = subprocess.run(
        [
            sys.executable, "bench/pipeline.py", "--exceptions", "300", "--window", "300", "--latency-seconds", "0",
            "--no-stream", "--db", database, "--vhost", vhost, "--redis-db", redis_db, "--port", str(_free_port()),
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("events_per_min=")
    result = json.loads(proc.stdout[: proc.stdout.index("\nproduct: ")])
    assert result["exceptions"] == 300 and result["drained"]
    # Every exception went all the way, the critical ones through an approval posted to the API.
    assert result["exception_statuses"] == {"resolved": 300}
    assert result["approved_through_api"] == result["critical_exceptions"] > 0
    assert result["events_recorded"] > 300 * 8 and int(lines[-1].split("=")[1]) > 0
    assert result["outbox_rows_left"] == 0
