"""`make stack`: the production topology on the local services under supervisord - gunicorn, a Celery
worker per agent queue, the scheduler's worker, beat, the dead-letter consumer and Flower - and Flower
lists one worker consuming each agent queue; after kill -9 of any one of its processes (one of each
kind alone, the remaining agent workers together), the stack answers GET /api/health with 200 again
within 30 s."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import orjson
import psycopg
import pytest
from confluent_kafka import Consumer

from config import routing
from tests.support.factories import wait_until
from tests.support.host import ROOT, free_port
from tests.support.scenarios import settlement

# The shared services' database, vhost and Redis db of this module; another run on the same machine
# names its own (SENTINAI_STACK_TEST_DB, SENTINAI_STACK_TEST_REDIS_DB), or the two would drop each other's.
DB = VHOST = os.environ.get("SENTINAI_STACK_TEST_DB", "sentinai_stack_test")
REDIS_DB = os.environ.get("SENTINAI_STACK_TEST_REDIS_DB", "11")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """One `make stack` for the module's tests (starting one takes a while, and a second one's database
    cannot be dropped while the first one's processes still hold it)."""
    tmp_path = tmp_path_factory.mktemp("stack")
    with psycopg.connect("postgres://sentinai@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    vhosts = subprocess.run(
        ["rabbitmqctl", "-q", "list_vhosts"], capture_output=True, text=True, check=True
    ).stdout.split()
    if VHOST not in vhosts:
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", VHOST], check=True)
        subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*"], check=True)
    port, flower_port = free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "CELERY_", "REDIS_", "DJANGO_", "PROMETHEUS"))
    }
    env.update(
        {
            "PORT": str(port),
            "FLOWER_PORT": str(flower_port),
            # The standard variables, as a user with their own services would set them.
            "DATABASE_URL": f"postgres://sentinai_app@127.0.0.1:5432/{DB}",
            "DATABASE_OWNER_URL": f"postgres://sentinai@127.0.0.1:5432/{DB}",
            "CELERY_BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{VHOST}",
            "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
            "SENTINAI_VAR_DIR": str(tmp_path / "var"),
        }
    )
    log = tmp_path / "stack.log"
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "stack"], cwd=ROOT, env=env, stdout=log.open("a"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        yield port, flower_port, proc, log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_make_stack_starts_everything_and_flower_lists_one_worker_per_agent_queue(stack):
    port, flower_port, proc, log = stack
    deadline = time.monotonic() + 240
    health = workers = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-4000:]
        try:
            if health is None:
                response = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5)
                health = response.json() if response.status_code == 200 else None
            response = httpx.get(f"http://127.0.0.1:{flower_port}/api/workers", params={"refresh": "1"}, timeout=20)
            if response.status_code == 200:
                workers = response.json()
                consumed = [q["name"] for w in workers.values() for q in (w.get("active_queues") or [])]
                if health and all(consumed.count(q.name) == 1 for q in routing.work_queues()):
                    break
        except httpx.HTTPError:
            pass
        time.sleep(2)
    assert (
        health is not None and health["database"]["engine"] == "postgresql" and health["broker"]["transport"] == "amqp"
    ), log.read_text()[-4000:]
    assert workers, log.read_text()[-4000:]
    by_queue = {}
    for name, info in workers.items():
        for queue in info.get("active_queues") or []:
            by_queue.setdefault(queue["name"], []).append(name)
    # Each agent's worker (`-Q <agent>`) consumes all of the agent's lanes, and no other worker does.
    for queue in routing.work_queues():
        assert len(by_queue.get(queue.name, [])) == 1, (queue.name, by_queue)
        (worker,) = by_queue[queue.name]
        assert worker.startswith(f"{routing.agent_of(queue.name)}@"), worker
    assert routing.DEAD_LETTER_QUEUE not in by_queue, "no Celery worker consumes the DLQ"
    # The stack used the database and the vhost it was given, and nothing else.
    with psycopg.connect(f"postgres://sentinai@127.0.0.1:5432/{DB}") as conn:
        assert conn.execute("SELECT count(*) FROM tenant").fetchone()[0] >= 2  # seed_demo ran here
    queues = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", VHOST, "name"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert {q.name for q in routing.work_queues()} <= set(queues), queues
    text = log.read_text()  # supervisord's own log: each process it started and kept up
    for process in ("web", "beat", "dlq", "flower", "stream", *routing.AGENTS, routing.SCHEDULER_QUEUE):
        assert f"success: {process} entered RUNNING state" in text, process
    _assert_each_process_holds_its_database_role(log.parent / "var")


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def _assert_each_process_holds_its_database_role(var_dir: Path) -> None:
    """What `ps e` shows: no running process holds the schema owner's URL (only the migrate step
    had it); the cross-tenant processes hold the platform role, the agent workers the application role."""
    roles: dict[str, set[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = _environ(int(entry.name))
            if environ.get("SENTINAI_VAR_DIR") != str(var_dir):
                continue  # not a process of this stack
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ProcessLookupError):
            continue
        if cmdline.startswith(("make ", "/bin/sh -c env -u DATABASE_OWNER_URL")):
            continue  # make and its recipe's shell: the user gave them the owner's URL for the migrate step
        assert "DATABASE_OWNER_URL" not in environ, cmdline
        if "DATABASE_URL" not in environ or cmdline.startswith("/bin/sh -c"):
            continue  # a shell that sets the variable for the command it runs (exec'd under supervisord)
        role = environ["DATABASE_URL"].split("//", 1)[1].split("@", 1)[0].split(":", 1)[0]
        if "gunicorn" in cmdline:
            roles.setdefault("web", set()).add(role)
        elif "consume_dead_letters" in cmdline:
            roles.setdefault("dlq", set()).add(role)
        elif "relay_event_stream" in cmdline:
            roles.setdefault("stream", set()).add(role)
        elif " worker " in cmdline and " -Q " in cmdline:
            queue = cmdline.split(" -Q ", 1)[1].split()[0]
            roles.setdefault(queue, set()).add(role)
    for name in ("web", "dlq", "stream", *routing.PLATFORM_QUEUES):
        assert roles.get(name) == {"sentinai_platform"}, (name, roles)
    for queue in set(routing.AGENTS) - set(routing.PLATFORM_QUEUES):
        assert roles.get(queue) == {"sentinai_app"}, (queue, roles)


def test_an_exception_ingested_on_the_stack_appears_on_its_tenants_kafka_topic_in_order(stack):
    port, _, proc, log = stack
    keys = log.parent / "var" / "demo-keys.json"
    wait_until(lambda: keys.exists() and proc.poll() is None, 240, message="make stack to seed its tenants")
    key = json.loads(keys.read_text())["acme-finance"]
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}, timeout=10)

    def accepted():
        try:
            response = http.post(
                "/api/exceptions/acme-finance",
                json={
                    "source_system": "stack-test",
                    "exception_type": "SETTLEMENT_FAILURE",
                    "payload": settlement(5_000),
                },
            )
        except httpx.HTTPError:
            return None
        return response.json()["exception_id"] if response.status_code == 202 else None

    exception_id = wait_until(accepted, 240, interval=1, message="the stack's API to accept an exception")
    wait_until(
        lambda: http.get(f"/api/exceptions/acme-finance/{exception_id}").json().get("status") == "resolved",
        120, interval=0.5, message="the exception to be resolved on the stack",
    )  # fmt: skip
    consumer = Consumer(
        {
            "bootstrap.servers": "127.0.0.1:9092",
            "group.id": f"stack-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe(["sentinai.events.acme-finance"])
    events = []
    deadline = time.monotonic() + 120
    try:
        while "FeedbackCaptured" not in [e["event_type"] for e in events] and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and not message.error() and message.key() == exception_id.encode():
                events.append(orjson.loads(message.value()))
    finally:
        consumer.close()
    types = [e["event_type"] for e in events]
    assert types[0] == "ExceptionIngested" and "ExceptionResolved" in types and "FeedbackCaptured" in types, types
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))


def supervised(log) -> dict[str, tuple[str, int]]:
    """supervisorctl status of the stack: name -> (state, pid)."""
    conf = log.parent / "var" / "supervisord.conf"
    out = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "supervisorctl"), "-c", str(conf), "status"], capture_output=True, text=True
    ).stdout
    status = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            pid = int(parts[3].rstrip(",")) if len(parts) > 3 and parts[2] == "pid" else 0
            status[parts[0]] = (parts[1], pid)
    return status


def test_after_kill_9_of_any_single_process_the_stack_restarts_it_and_health_answers_200_within_30s(stack):
    port, _, proc, log = stack
    processes = [
        *(line.split(":", 1)[0] for line in (ROOT / "Procfile").read_text().splitlines() if line[:1].isalpha())
    ]

    def healthy():
        try:
            return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def all_running():
        status = supervised(log)
        return all(status.get(p, ("?",))[0] == "RUNNING" for p in processes) and status

    wait_until(lambda: healthy() and all_running(), 240, interval=1, message="the stack to run every process")
    # One process of each kind alone (the API, a prefork agent worker, the threaded tool worker, a
    # platform worker, beat, the dead-letter consumer, the relay, Flower); the other agent workers - the
    # same command on other queues - together in a last round, so every process is killed once.
    alone = ["web", "intake", "tool", "sla", "scheduler", "beat", "dlq", "stream", "flower"]
    assert set(alone) <= set(processes), processes
    rounds = [[name] for name in alone] + [[p for p in processes if p not in alone]]
    for names in rounds:
        pids = {name: supervised(log)[name][1] for name in names}
        for pid in pids.values():
            os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()

        def restarted(pids=pids):
            status = supervised(log)
            return healthy() and all(status[n][0] == "RUNNING" and status[n][1] != pid for n, pid in pids.items())

        wait_until(
            restarted, 30, interval=0.5, message=f"{names} to be restarted and health to answer 200 after kill -9"
        )
        assert time.monotonic() - killed < 30, names
        assert proc.poll() is None, f"make stack stopped after kill -9 of {names}"
    assert all_running()
