"""Tenant isolation and key scopes on the embedded default (SQLite, no row-level security): every wall
here is the application's own filter by the caller's tenant. The same matrix runs on PostgreSQL in
tests/integration/test_api_isolation.py."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from tests.support.factories import wait_until
from tests.support.host import ROOT, embedded_env, free_port
from tests.support.scenarios import TERMINAL, settlement

pytestmark = pytest.mark.slow

A, B = "alpha", "bravo-corp"


# The management commands of the set-up, run in one process (each `manage.py` pays Django's start-up):
# call_command runs exactly what `manage.py <command>` runs; the last line of a key's output is the key.
_SETUP = """
import io, json, sys
import django
django.setup()
from django.core.management import call_command
out = []
for args in json.loads(sys.argv[1]):
    buf = io.StringIO()
    call_command(*args, stdout=buf)
    out.append(buf.getvalue().strip().splitlines()[-1] if buf.getvalue().strip() else "")
print(json.dumps(out))
"""


def _manage_all(env, commands: list[list[str]]) -> list[str]:
    import json

    done = subprocess.run(
        [sys.executable, "-c", _SETUP, json.dumps(commands)],
        cwd=ROOT, env={"DJANGO_SETTINGS_MODULE": "config.settings.local", **env}, check=True, capture_output=True,
        text=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    var = tmp_path_factory.mktemp("embedded-security")
    env = embedded_env(SENTINAI_VAR_DIR=str(var), PYTHONUNBUFFERED="1", SENTINAI_SCHEDULER_TICK_SECONDS="0.5")
    wanted = {
        "a": (A, "ingest,read,approve", "alpha-desk"),
        "b": (B, "ingest,read,approve", "bravo-desk"),
        "operator": (A, "ingest,read,approve,operate", "ops-desk"),
        "a-ingest": (A, "ingest", "alpha-feed"),
        "a-read": (A, "read", "alpha-viewer"),
    }
    commands = [
        ["migrate", "-v", "0"],
        *(["create_tenant", t, "--domain-pack", "finance", "--rate", "500", "--burst", "1000"] for t in (A, B)),
        *(["create_api_key", t, "--scopes", scopes, "--name", name] for t, scopes, name in wanted.values()),
    ]
    printed = _manage_all(env, commands)
    keys = dict(zip(wanted, printed[3:], strict=True))
    port = free_port()
    log = (var / "platform.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "run_embedded", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    clients = {
        name: httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}, timeout=30)
        for name, key in keys.items()
    }
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if clients["a"].get("/api/health").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.3)
    yield clients
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)


def _report(client, tenant_id: str, ref: str) -> str:
    body = {"source_system": "core", "source_ref": ref, "exception_type": "SETTLEMENT_FAILURE"}
    response = client.post(f"/api/exceptions/{tenant_id}", json={**body, "payload": settlement(50_000)})
    assert response.status_code == 202, response.text
    return response.json()["exception_id"]


@pytest.fixture(scope="module")
def world(platform):
    """One exception of each tenant handled to the end, with a manual tool run each."""
    ids = {}
    for party, tenant_id in (("a", A), ("b", B)):
        client = platform[party]
        exception_id = _report(client, tenant_id, f"{tenant_id.upper()}-REF")

        def done(client=client, tenant_id=tenant_id, exception_id=exception_id):
            body = client.get(f"/api/exceptions/{tenant_id}/{exception_id}").json()
            return body["status"] in TERMINAL

        wait_until(done, 60, interval=0.3)
        view = client.get(f"/api/exceptions/{tenant_id}/{exception_id}/playbook").json()
        run = client.post("/api/tools/execute", json={"exception_id": exception_id, "tool": "lookup_counterparty"})
        assert run.status_code == 202, run.text
        ids |= {
            f"{party}_exc": exception_id,
            f"{party}_pb": view["playbook"]["id"],
            f"{party}_exec": run.json()["execution_id"],
        }
    return ids


BY_ID = {
    "detail": ("GET", "/api/exceptions/{A}/{b_exc}", None),
    "trace": ("GET", "/api/exceptions/{A}/{b_exc}/trace", None),
    "playbook-view": ("GET", "/api/exceptions/{A}/{b_exc}/playbook", None),
    "approve": ("POST", "/api/exceptions/{A}/{b_exc}/approve", {"decision": "approve"}),
    "feedback": ("POST", "/api/exceptions/{A}/{b_exc}/feedback", {"rating": 1}),
    "tool-execute": ("POST", "/api/tools/execute", {"exception_id": "{b_exc}", "tool": "lookup_counterparty"}),
    "tool-execution": ("GET", "/api/tools/executions/{b_exec}", None),
    "playbook": ("GET", "/api/playbooks/{b_pb}", None),
}


def _fill(template, ids):
    if isinstance(template, str):
        return template.format(A=A, B=B, **ids)
    if isinstance(template, dict):
        return {k: _fill(v, ids) for k, v in template.items()}
    return template


def _call(client, method, path, body):
    return client.get(path) if method == "GET" else client.post(path, json=body)


@pytest.mark.parametrize("name", BY_ID)
def test_bs_objects_reached_by_id_with_as_key_are_404_like_objects_that_do_not_exist(platform, world, name):
    method, path, body = BY_ID[name]
    response = _call(platform["a"], method, _fill(path, world), _fill(body, world))
    assert response.status_code == 404, response.text
    assert B not in response.text and world["b_exc"] not in response.text
    missing = {**world, "b_exc": str(uuid.uuid4()), "b_exec": str(uuid.uuid4()), "b_pb": str(uuid.uuid4())}
    nowhere = _call(platform["a"], method, _fill(path, missing), _fill(body, missing))
    assert (nowhere.status_code, nowhere.json()) == (404, response.json())


def test_lists_for_a_never_include_bs_rows(platform, world):
    executions = platform["a"].get("/api/tools/executions").json()["results"]
    assert {r["tenant_id"] for r in executions} == {A}
    assert world["b_exec"] not in {r["execution_id"] for r in executions}
    exceptions = platform["a"].get(f"/api/exceptions/{A}").json()["results"]
    assert {r["tenant_id"] for r in exceptions} == {A}


def test_the_operator_reads_bs_rows_but_never_writes_for_b(platform, world):
    operator = platform["operator"]
    assert operator.get(f"/api/tools/executions/{world['b_exec']}").json()["tenant_id"] == B
    assert operator.get(f"/api/playbooks/{world['b_pb']}").status_code == 200
    for method, path, body in (
        ("POST", "/api/exceptions/{B}", {"source_system": "x", "payload": {}}),
        ("POST", "/api/exceptions/{B}/{b_exc}/approve", {"decision": "approve"}),
        ("POST", "/api/exceptions/{B}/{b_exc}/feedback", {"rating": 1}),
        ("POST", "/api/tools/execute", {"exception_id": "{b_exc}", "tool": "lookup_counterparty"}),
    ):
        response = _call(operator, method, _fill(path, world), _fill(body, world))
        assert response.status_code == 403, (path, response.text)
    events = operator.get(f"/api/exceptions/{B}/{world['b_exc']}").json()["events"]
    assert not any(e["event_type"] in ("FeedbackSubmitted", "ApprovalDecided") for e in events)


def test_an_ingest_key_cannot_read_and_a_read_key_cannot_ingest(platform):
    assert platform["a-ingest"].get(f"/api/exceptions/{A}").json()["missing_scope"] == "read"
    refused = platform["a-read"].post(f"/api/exceptions/{A}", json={"source_system": "x", "payload": {}})
    assert (refused.status_code, refused.json()["missing_scope"]) == (403, "ingest")


def _walk(client, url: str, key: str) -> list[str]:
    seen: list[str] = []
    for _ in range(100):
        body = client.get(url).json()
        seen += [r[key] for r in body["results"]]
        url = body["next"]
        if url is None:
            return seen
    raise AssertionError(f"still a next page after 100 pages: {len(seen)} rows, {len(set(seen))} distinct")


def test_walking_the_cursor_pages_ends_after_every_row_once(platform, world):
    for i in range(23):
        _report(platform["a-ingest"], A, f"PAGE-{i}")
    exceptions = _walk(platform["a"], f"/api/exceptions/{A}?limit=10", "exception_id")
    assert len(exceptions) == len(set(exceptions)) == 24
    platform["a"].post("/api/tools/execute", json={"exception_id": world["a_exc"], "tool": "lookup_counterparty"})
    executions = _walk(platform["a"], "/api/tools/executions?limit=7", "execution_id")
    assert len(executions) == len(set(executions)) >= 2
