"""The same scenarios on the embedded default (`make run`): one process, SQLite, in-process broker."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.support.factories import wait_until
from tests.support.host import ROOT, embedded_env, free_port
from tests.support.scenarios import TERMINAL, assert_causal_chain, is_subsequence, settlement, types

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    var = tmp_path_factory.mktemp("embedded")
    env = embedded_env(SENTINAI_VAR_DIR=str(var), PYTHONUNBUFFERED="1", SENTINAI_SCHEDULER_TICK_SECONDS="0.5")
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    subprocess.run(
        [*manage, "create_tenant", "acme", "--domain-pack", "finance", "--rate", "500", "--burst", "1000"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    key = (
        subprocess.run(
            [*manage, "create_api_key", "acme", "--scopes", "ingest,read,approve"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    port = free_port()
    log = (var / "platform.log").open("w")
    proc = subprocess.Popen(
        [*manage, "run_embedded", "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if client.get("/api/health").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.3)
    yield client
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)


def report(client, payload) -> str:
    response = client.post(
        "/api/exceptions/acme",
        json={"source_system": "core", "exception_type": "SETTLEMENT_FAILURE", "payload": payload},
    )
    assert response.status_code == 202, response.text
    return response.json()["exception_id"]


def wait(client, exception_id, statuses) -> dict:
    def reached():
        body = client.get(f"/api/exceptions/acme/{exception_id}").json()
        return body if body["status"] in statuses else None

    return wait_until(reached, 60, interval=0.3)


def test_health_names_sqlite_and_the_in_process_broker(embedded):
    body = embedded.get("/api/health").json()
    assert (body["database"]["engine"], body["broker"]["transport"]) == ("sqlite", "memory")


def test_medium_is_resolved_with_no_human(embedded):
    exception_id = report(embedded, settlement(50_000))
    body = wait(embedded, exception_id, TERMINAL)
    assert (body["status"], body["severity"]) == ("resolved", "medium")
    events = wait_until(
        lambda: (
            (e := embedded.get(f"/api/exceptions/acme/{exception_id}").json()["events"])
            and "FeedbackCaptured" in types(e)
            and e
        ),
        30,
    )
    assert_causal_chain(events)
    assert is_subsequence(
        ["ExceptionIngested", "TriageCompleted", "PlaybookMatched", "ToolExecutionCompleted", "ExceptionResolved"],
        types(events),
    )


def test_critical_waits_for_approval_then_resolves_or_is_escalated_on_reject(embedded):
    approved, rejected = report(embedded, settlement(2_000_000)), report(embedded, settlement(3_000_000))
    for exception_id in (approved, rejected):
        assert wait(embedded, exception_id, {"awaiting_approval", *TERMINAL})["status"] == "awaiting_approval"
    assert embedded.post(f"/api/exceptions/acme/{approved}/approve", json={"decision": "approve"}).status_code == 202
    assert embedded.post(f"/api/exceptions/acme/{rejected}/approve", json={"decision": "reject"}).status_code == 202
    assert wait(embedded, approved, TERMINAL)["status"] == "resolved"
    assert wait(embedded, rejected, TERMINAL)["status"] == "escalated"


def test_pii_is_served_redacted(embedded):
    exception_id = report(
        embedded, settlement(1_000, contact="ops@bank.example", phone="+44 20 7946 0958", card="4111111111111111")
    )
    text = embedded.get(f"/api/exceptions/acme/{exception_id}").text
    for raw in ("ops@bank.example", "7946 0958", "4111111111111111"):
        assert raw not in text
    assert "****1111" in text
