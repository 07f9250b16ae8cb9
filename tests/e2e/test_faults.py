"""Faults under load on the production topology: `make stack`'s processes under supervisord (a worker
per agent queue, beat, the dead-letter consumer, the event-stream relay, gunicorn) on PRIVATE
PostgreSQL, RabbitMQ and Redis instances that this module starts (tests/support/services.py), so
restarting them disturbs nothing else. HTTP ingest runs while each fault happens
(tests/support/load.py: an Idempotency-Key per exception, sent again after a 503, 429 or a cut
connection).

Each test asserts:
- every accepted exception reaches a terminal status within SETTLE_SECONDS of the fault's end;
- nothing that must happen once happened twice (topology.ONCE: the pipeline's milestones per
  exception; tool executions match their requests);
- no 5xx other than the documented 503 (database unreachable, with Retry-After);
- the API accepts an exception again within RECOVERY_SECONDS of the fault's end, and the supervised
  processes are all RUNNING again (GET /api/health 200).
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
from kombu import Connection, Producer

from config import routing
from tests.support.load import IngestLoad, LoadReport
from tests.support.topology import TENANT, Topology

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

RATE = 6.0  # exceptions per second offered during each fault
LEAD_SECONDS = 3.0  # load before the fault
TRAIL_SECONDS = 6.0  # load after the fault
SETTLE_SECONDS = 90.0
RECOVERY_SECONDS = 15.0


@pytest.fixture(scope="module")
def topology():
    stack = Topology()
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def under_load(topology: Topology, fault) -> tuple[LoadReport, float, dict]:
    """Ingest at RATE, do the fault, keep ingesting, stop; returns the report, when the fault ended and
    what the fault returned."""
    load = IngestLoad(topology.url(), TENANT, topology.key, rate=RATE).start()
    time.sleep(LEAD_SECONDS)
    detail = fault() or {}
    ended = time.time()
    time.sleep(TRAIL_SECONDS)
    report = load.stop(grace=60)
    return report, ended, detail


def assert_sound(topology: Topology, report: LoadReport, fault_ended: float) -> None:
    assert report.accepted, "nothing was accepted"
    assert report.given_up == 0, f"{report.given_up} exceptions were never accepted: {report.statuses} {report.errors}"
    assert not report.undocumented_5xx(), f"5xx other than the documented 503: {report.statuses}"
    after = [t for t in report.successes if t >= fault_ended]
    assert after and after[0] - fault_ended <= RECOVERY_SECONDS, (
        f"no exception accepted within {RECOVERY_SECONDS}s of the fault's end: {report.statuses} {report.errors}"
    )
    ids = [a.exception_id for a in report.accepted.values()]
    assert len(set(ids)) == len(ids), "two idempotency keys got one exception"

    deadline = time.monotonic() + SETTLE_SECONDS
    left = topology.not_terminal(ids)
    while left and time.monotonic() < deadline:
        time.sleep(1)
        left = topology.not_terminal(ids)
    assert topology.missing(ids) == 0, "accepted exceptions without a row"
    assert not left, f"{len(left)} of {len(ids)} accepted exceptions not terminal after {SETTLE_SECONDS}s: {left[:5]}"
    doubled = topology.doubled(ids)
    assert not doubled, f"what must happen once happened more often: {doubled[:5]}"
    deadline = time.monotonic() + 30
    while not (topology.all_running() and topology.health() == 200) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert topology.all_running() and topology.health() == 200, topology.status()


def assert_dependency_up(topology: Topology, dependency: str) -> None:
    deadline = time.monotonic() + 15
    while topology.metric("sentinai_dependency_up", dependency=dependency) != 1.0 and time.monotonic() < deadline:
        time.sleep(0.5)
    down = {p: v for p, v in topology.dependency_gauges().items() if v.get(dependency) == 0}
    assert topology.metric("sentinai_dependency_up", dependency=dependency) == 1.0, down


def test_a_broker_restart_under_load_loses_and_doubles_nothing(topology):
    before = topology.status()

    def restart():
        topology.rabbit.restart(down_seconds=3)

    report, ended, _ = under_load(topology, restart)
    assert_sound(topology, report, ended)
    # Every process rode it out without a restart: the dead-letter consumer exited here.
    for name in ("dlq", "beat", "stream", "web", "triage"):
        assert topology.pid(name) == before[name][1], (name, topology.log(name)[-3000:])
    assert "dependency broker unreachable" in topology.log("dlq") + topology.log("web")
    assert "dependency broker reachable again" in topology.log("dlq") + topology.log("web")
    assert_dependency_up(topology, "broker")


def test_a_database_restart_under_load_answers_503_with_retry_after_and_loses_nothing(topology):
    def restart():
        topology.postgres.restart(down_seconds=3)

    report, ended, _ = under_load(topology, restart)
    assert_sound(topology, report, ended)
    assert report.statuses[503] > 0, f"the API never saw the outage: {report.statuses}"
    log = topology.log("web")
    assert "dependency database unreachable" in log and "dependency database reachable again" in log
    workers = [name for name in topology.processes() if name not in ("web", "beat", "dlq", "stream")]
    saw = [name for name in workers if "dependency database unreachable" in topology.log(name)]
    assert saw, "no worker reported the outage"
    for name in saw:  # one line per outage and process (a worker's main process and its pool child), and
        # a recovery line for each; a connection that fails again while the database starts up counts anew
        log = topology.log(name)
        assert log.count("dependency database unreachable") <= 4, name
        assert log.count("dependency database reachable again") >= log.count("dependency database unreachable") - 1
    assert_dependency_up(topology, "database")


def test_a_redis_restart_under_load_fails_open_and_loses_nothing(topology):
    def restart():
        topology.redis.restart(down_seconds=3)

    report, ended, _ = under_load(topology, restart)
    assert_sound(topology, report, ended)
    assert not report.server_errors(), f"Redis down must not refuse ingest: {report.statuses}"
    assert (topology.metric("sentinai_admission_degraded_total", limit="rate") or 0) > 0
    assert "dependency redis unreachable" in topology.log("web")


def test_sigkill_of_a_worker_main_process_under_load_loses_and_doubles_nothing(topology):
    def kill():
        return {"pid": topology.kill("triage")}

    report, ended, detail = under_load(topology, kill)
    assert_sound(topology, report, ended)
    assert topology.pid("triage") != detail["pid"], "supervisord did not restart the worker"


def test_sigkill_of_the_dead_letter_consumer_loses_no_dead_letter(topology):
    poison = f"poison-{uuid.uuid4().hex[:8]}"

    def kill():
        pid = topology.kill("dlq")
        # A message no worker can decode reaches the dead-letter queue while its consumer is down.
        with Connection(topology.rabbit.url()) as conn:
            Producer(conn.default_channel).publish(
                b"{not json", exchange=routing.EXCHANGE, routing_key=routing.lane_queue("triage", TENANT),
                content_type="application/json", content_encoding="utf-8",
                headers={"id": poison, "task": "agents.triage.handle_batch"},
            )  # fmt: skip
        return {"pid": pid}

    report, ended, detail = under_load(topology, kill)
    assert_sound(topology, report, ended)
    assert topology.pid("dlq") != detail["pid"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not topology.sql(
        "SELECT 1 FROM dead_letter WHERE message_id = %s", (poison,)
    ):
        time.sleep(0.5)
    assert topology.sql("SELECT source FROM dead_letter WHERE message_id = %s", (poison,)) == [("broker",)]


def test_sigkill_of_a_gunicorn_worker_mid_request_loses_and_doubles_nothing(topology):
    def kill():
        master = topology.pid("web")
        workers = topology.children(master)
        assert workers, "gunicorn has no workers"
        os.kill(workers[0], signal.SIGKILL)
        return {"master": master, "worker": workers[0]}

    report, ended, detail = under_load(topology, kill)
    assert_sound(topology, report, ended)
    assert topology.pid("web") == detail["master"], "the master restarts its worker; supervisord has nothing to do"
    assert detail["worker"] not in topology.children(detail["master"])
