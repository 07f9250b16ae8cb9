"""The embedded default (SQLite + in-process broker) killed mid-flight loses nothing: the outbox keeps
every batch until its consumer deletes it, and a restart owes all of them again."""

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.support.host import ROOT, embedded_env, free_port
from tests.support.probes import IMPLEMENTATIONS

APPEND = """
import uuid
from exceptions_app.models import ExceptionRecord
from sentinai.eventstore import store
from sentinai.tenancy.services import tenant_create_or_update
from sentinai.tenancy.scope import tenant_scope
tenant_create_or_update(tenant_id="acme", domain_pack="finance")
for _ in range({batches}):
    ids = [str(uuid.uuid4()) for _ in range({per_batch})]
    with tenant_scope("acme"):
        ExceptionRecord.objects.bulk_create([ExceptionRecord(id=i, tenant_id="acme", source_system="t") for i in ids])
        store.open_streams("acme", ids)
        store.append(tenant_id="acme", producer="intake",
                     events=[store.NewEvent(i, "TriageRequested", {{"exception_type": "sleep"}}) for i in ids])
"""


@pytest.mark.slow
def test_killing_the_embedded_platform_mid_flight_loses_nothing(tmp_path):
    var = tmp_path / "var"
    sleep_flag = tmp_path / "sleep"
    sleep_flag.touch()
    env = embedded_env(
        SENTINAI_VAR_DIR=str(var),
        SENTINAI_AGENT_IMPLEMENTATIONS=json.dumps(IMPLEMENTATIONS),
        SENTINAI_OUTBOX_GRACE_SECONDS="0",
        PROBE_SLEEP_FILE=str(sleep_flag),
        PROBE_SLEEP_SECONDS="0.05",
        # One message = one batch of 10 committed at a time: coalesced, the 12 waiting messages could
        # commit as one batch of 120 before the kill, whatever this machine's speed.
        SENTINAI_COALESCE="false",
        PYTHONUNBUFFERED="1",
    )
    manage = [sys.executable, "manage.py"]
    var.mkdir()
    subprocess.run([*manage, "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    subprocess.run([*manage, "shell", "-c", APPEND.format(batches=12, per_batch=10)], cwd=ROOT, env=env, check=True)
    db = sqlite3.connect(var / "sentinai.sqlite3", timeout=30)

    def processed(consumer):
        return db.execute("SELECT count(*) FROM processed_event WHERE consumer = ?", [consumer]).fetchone()[0]

    def run_platform(log_name):
        log = (tmp_path / log_name).open("w")
        return subprocess.Popen(
            [*manage, "run_embedded", "--port", str(free_port())],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    first = run_platform("first.log")
    try:
        deadline = time.monotonic() + 60
        while processed("triage") < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert 0 < processed("triage") < 120, "the kill must land mid-flight"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    at_kill = processed("triage")
    assert at_kill < 120

    sleep_flag.unlink()
    second = run_platform("second.log")
    try:
        deadline = time.monotonic() + 90
        while processed("policy") < 120 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        second.send_signal(signal.SIGINT)
        second.wait(timeout=30)
    assert processed("triage") == 120 and processed("policy") == 120, (tmp_path / "second.log").read_text()[-3000:]
    rows = db.execute("SELECT normalized FROM exception").fetchall()
    assert len(rows) == 120
    assert all(json.loads(r[0])["applied"] == [1] for r in rows)
    emitted = db.execute("SELECT count(*) FROM exception_event WHERE event_type = 'PolicyEvaluationRequested'")
    assert emitted.fetchone()[0] == 120
    assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
