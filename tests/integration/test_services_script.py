"""scripts/services.sh: a second run changes nothing and is quick; it leaves alone a service the
environment points elsewhere; the Kafka probe it waits with tells a broker from a closed port."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.support.host import ROOT, free_port

SCRIPT = ROOT / "scripts" / "services.sh"
PROBE = ROOT / "scripts" / "kafka_probe.py"
CHANGES = ("installing", "starting", "creating", "formatting", "resolving", "trusting")


def run_services(**env) -> tuple[subprocess.CompletedProcess, float]:
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL")}
    environment.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    environment.update(env)
    started = time.monotonic()
    result = subprocess.run([str(SCRIPT)], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)
    return result, time.monotonic() - started


def test_a_run_with_every_service_up_changes_nothing_and_is_quick():
    run_services()  # whatever the suite did before, everything is up after this one
    result, seconds = run_services()
    assert result.returncode == 0, result.stderr
    assert seconds < 15, seconds
    said = result.stdout.lower()
    assert not [word for word in CHANGES if word in said], result.stdout
    assert "services ready" in said


def test_a_service_the_environment_points_elsewhere_is_left_alone():
    # Only parsed, never contacted: the other services are skipped by name, so nothing is started.
    result, _ = run_services(
        DATABASE_URL="postgres://app@db.internal.example:5432/sentinai",
        REDIS_URL="redis://127.0.0.1:6380/0",
        SENTINAI_SKIP_SERVICES="rabbitmq,kafka",
    )
    assert result.returncode == 0, result.stderr
    assert "leaving postgresql alone: the environment points at another one" in result.stdout
    assert "leaving redis alone: the environment points at another one" in result.stdout
    assert "leaving rabbitmq alone (SENTINAI_SKIP_SERVICES)" in result.stdout


def test_the_kafka_probe_answers_for_the_broker_and_fails_clearly_on_a_closed_port():
    ok = subprocess.run([sys.executable, str(PROBE), "127.0.0.1:9092"], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    assert "1 broker(s), controller 1" in ok.stdout
    port = free_port()
    closed = subprocess.run([sys.executable, str(PROBE), f"127.0.0.1:{port}"], capture_output=True, text=True)
    assert closed.returncode == 1
    assert f"no metadata from 127.0.0.1:{port}" in closed.stderr


@pytest.mark.parametrize("port", [5432, 5672, 6379, 9092])
def test_every_service_listens_on_loopback_only(port):
    listening = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True)
    addresses = {line.split()[3].rsplit(":", 1)[0] for line in listening.stdout.splitlines()}
    assert addresses, f"nothing listens on {port}"
    assert addresses <= {"127.0.0.1", "[::1]", "[::ffff:127.0.0.1]"}, addresses
