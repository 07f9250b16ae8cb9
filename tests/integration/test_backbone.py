"""Acceptance tests of the event backbone: real Celery workers on RabbitMQ against PostgreSQL.

The probe agents (tests/support/probes.py) record on the exception row the order in which they applied
events; "took effect once" means exactly one entry per event there, one processed_event row, and one
event emitted in reaction.
"""

from __future__ import annotations

import random
import subprocess
import time
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings as settings_module
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from kombu import Producer

from config import routing
from config.celery import app as celery_app
from exceptions_app.models import ExceptionRecord
from sentinai.eventstore import message, outbox, store
from sentinai.models import DeadLetter, EventAttempt, ExceptionEvent, Outbox, ParkedEvent, ProcessedEvent
from sentinai.pipeline import scheduler
from sentinai.tenancy.scope import all_tenants_scope, tenant_scope
from tests.support.factories import append, make_exceptions, make_tenant, wait_until
from tests.support.metrics import counter
from tests.support.probes import IMPLEMENTATIONS
from tests.support.workers import WorkerProcess

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

TENANT = "acme"
# Coalescing merges the messages waiting in a queue into one batch, which drops duplicates in memory and
# sorts an exception's events: tests of the database's idempotency and parking turn it off.
NO_COALESCING = {"SENTINAI_COALESCE": "false"}


def applied(exception_id) -> list[int]:
    with tenant_scope(TENANT):
        normalized = ExceptionRecord.objects.get(pk=exception_id).normalized
    return normalized.get("applied", [])


def count(model, **filters) -> int:
    with tenant_scope(TENANT):
        return model.objects.filter(**filters).count()


def append_many(exception_ids, kind="x") -> list:
    """One TriageRequested per exception, in one transaction (one outbox row, one message)."""
    with tenant_scope(TENANT):
        return store.append(
            tenant_id=TENANT,
            events=[store.NewEvent(i, "TriageRequested", {"exception_type": kind}) for i in exception_ids],
            producer="intake",
        )


def publish_body(agent: str, body: dict) -> None:
    """Publish a message body to TENANT's lane of the agent, as the outbox would."""
    lane = routing.lane_queue(agent, TENANT)
    celery_app.send_task(message.task_name(agent), args=[body], queue=lane, routing_key=lane)


def consumers(agent: str) -> int:
    """Consumers of TENANT's lane of the agent."""
    with celery_app.connection_for_write() as conn:
        return conn.default_channel.queue_declare(queue=routing.lane_queue(agent, TENANT), passive=True).consumer_count


def duplicates() -> float:
    """Events the triage consumer found already applied (processed_event) and skipped."""
    return counter("sentinai_events_duplicate_total", agent="triage")


def parked() -> float:
    return counter("sentinai_events_parked_total", agent="triage")


@pytest.fixture
def tenant(purge_broker):
    return make_tenant(TENANT)


# --- duplicates ----------------------------------------------------------------------------------


def test_a_message_delivered_again_after_its_batch_committed_is_rejected_by_the_database(tenant, log_dir):
    ids = make_exceptions(TENANT, 20)
    envelopes = append_many(ids)  # the fast path publishes the first copy
    with tenant_scope(TENANT):
        row = Outbox.objects.get(queue="triage")
    copy = message.encode(tenant_id=TENANT, agent="triage", outbox_ids=[row.id], events=envelopes)
    with WorkerProcess(["triage", "policy"], log_dir=log_dir, agents=IMPLEMENTATIONS, env=NO_COALESCING):
        wait_until(lambda: count(ProcessedEvent, consumer="triage") == 20, 30, message="the first copy to commit")
        before = duplicates()
        publish_body("triage", copy)
        wait_until(lambda: duplicates() > before, 30, message="the second copy to be consumed")
        wait_until(lambda: count(ProcessedEvent, consumer="policy") == 20, 30)
    assert duplicates() - before == 20
    assert all(applied(i) == [1] for i in ids)
    assert count(ProcessedEvent, consumer="triage") == 20
    assert count(ExceptionEvent, event_type="PolicyEvaluationRequested") == 20
    assert count(Outbox) == 0


def test_an_event_republished_by_the_relay_is_rejected_by_the_database(tenant, log_dir):
    ids = make_exceptions(TENANT, 5)
    append_many(ids)
    # As if the publishing process died after sending but before stamping the row: it looks unpublished
    # and old to the relay, which sends the batch again.
    with tenant_scope(TENANT):
        Outbox.objects.update(published_at=None, created_at=timezone.now() - timedelta(minutes=1))
    assert outbox.relay_all_tenants() == 1
    before = duplicates()
    # Two copies wait in the queue. A solo worker with a prefetch of one is handed the second only once
    # it acknowledged the first, which it does after that batch committed.
    with WorkerProcess(["triage", "policy"], log_dir=log_dir, agents=IMPLEMENTATIONS, env=NO_COALESCING):
        wait_until(lambda: duplicates() > before, 30, message="the second copy to be consumed")
        wait_until(lambda: count(ProcessedEvent, consumer="policy") == 5, 30)
    assert duplicates() - before == 5
    assert all(applied(i) == [1] for i in ids)
    assert count(ExceptionEvent, event_type="PolicyEvaluationRequested") == 5
    assert count(Outbox) == 0


# --- ordering ------------------------------------------------------------------------------------


def test_events_of_one_exception_published_shuffled_to_two_workers_are_parked_and_applied_in_order(
    tenant, log_dir, monkeypatch
):
    # Only the single-event messages published below deliver the appended events, not the fast path's
    # one batch of all five in sequence order.
    monkeypatch.setattr(outbox, "publish_after_commit", lambda rows, envelopes: None)
    with (
        WorkerProcess(["triage"], name="a", log_dir=log_dir, agents=IMPLEMENTATIONS, env=NO_COALESCING),
        WorkerProcess(["triage"], name="b", log_dir=log_dir, agents=IMPLEMENTATIONS, env=NO_COALESCING),
    ):
        wait_until(lambda: consumers("triage") == 2, 10, message="both workers to consume from the queue")
        for _ in range(3):
            (exception_id,) = make_exceptions(TENANT, 1)
            with tenant_scope(TENANT):
                events = store.append(
                    tenant_id=TENANT,
                    events=[store.NewEvent(exception_id, "TriageRequested", {"exception_type": "x"}) for _ in range(5)],
                    producer="intake",
                )
                Outbox.objects.all().delete()
            assert [e.sequence for e in events] == [1, 2, 3, 4, 5]
            # Parking must happen, not just be likely. The last event goes first, and a worker's prefetch
            # is one message: the worker it reaches handles it before any other, so it parks unless the
            # other worker applied all four predecessors first - but those come out of order, and a lone
            # worker taking them one by one then parks one of them.
            rest = events[:-1]
            while rest == events[:-1]:
                random.shuffle(rest)
            published = [events[-1], *rest]
            parked_before = parked()
            for event in published:
                publish_body("triage", message.encode(tenant_id=TENANT, agent="triage", outbox_ids=[0], events=[event]))
            order = [e.sequence for e in published]
            wait_until(
                lambda exception_id=exception_id: len(applied(exception_id)) == 5 and not count(ParkedEvent),
                30,
                message=f"every event applied and none left parked (published {order})",
            )
            assert applied(exception_id) == [1, 2, 3, 4, 5], f"published {order}"
            assert parked() > parked_before, f"nothing parked (published {order})"
            assert count(ProcessedEvent, consumer="triage", event_id__in=[e.event_id for e in events]) == 5


# --- crash ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_worker_killed_holding_a_batch_loses_nothing_and_applies_everything_once(tenant, log_dir, tmp_path):
    sleep_flag, started = tmp_path / "sleep", tmp_path / "started"
    sleep_flag.touch()
    ids = make_exceptions(TENANT, 40)
    append_many(ids, kind="sleep")
    env = {"PROBE_SLEEP_FILE": str(sleep_flag), "PROBE_STARTED_FILE": str(started), "PROBE_SLEEP_SECONDS": "0.25"}
    with WorkerProcess(
        ["triage", "policy"], pool="prefork", log_dir=log_dir, agents=IMPLEMENTATIONS, env=env
    ) as worker:
        wait_until(started.exists, 30, message="the probe to start on the batch")
        (child,) = worker.children()
        subprocess.run(["kill", "-9", str(child)], check=True)
        sleep_flag.unlink()
        wait_until(lambda: count(ProcessedEvent, consumer="policy") == 40, 60)
        assert "WorkerLostError" in worker.log() or "Process 'ForkPoolWorker" in worker.log()
    assert all(applied(i) == [1] for i in ids)
    assert count(ExceptionEvent, event_type="PolicyEvaluationRequested") == 40
    assert count(Outbox) == 0


# --- failure isolation, retries, dead letters, replay --------------------------------------------


def test_one_failing_event_never_fails_its_batch_and_is_retried_then_dead_lettered_then_replayed(
    tenant, log_dir, tmp_path
):
    fault = tmp_path / "fault"
    fault.touch()
    ids = make_exceptions(TENANT, 100)
    bad = ids[37]
    with tenant_scope(TENANT):
        envelopes = store.append(
            tenant_id=TENANT,
            events=[store.NewEvent(i, "TriageRequested", {"exception_type": "boom" if i == bad else "x"}) for i in ids],
            producer="intake",
        )
    bad_event = next(e for e in envelopes if e.exception_id == bad)
    policy = '{"triage": {"base_seconds": 0.4, "factor": 2, "cap_seconds": 30, "max_attempts": 4}}'
    env = {"PROBE_FAULT_FILE": str(fault), "SENTINAI_RETRY_POLICIES": policy}
    with WorkerProcess(["triage", "policy"], log_dir=log_dir, agents=IMPLEMENTATIONS, env=env):
        wait_until(lambda: count(ProcessedEvent, consumer="triage") == 99, 30)
        # The 99 committed together, with the first failed attempt of the 100th.
        assert count(EventAttempt, event_id=bad_event.event_id) == 1
        assert count(ExceptionEvent, event_type="RetryScheduled") == 1
        deadline = time.monotonic() + 60
        while not count(DeadLetter) and time.monotonic() < deadline:
            scheduler.tick_all_tenants()
            time.sleep(0.1)
        with tenant_scope(TENANT):
            attempts = list(EventAttempt.objects.filter(event_id=bad_event.event_id).order_by("attempt"))
            letter = DeadLetter.objects.get()
        assert [a.attempt for a in attempts] == [1, 2, 3, 4]
        assert [a.state for a in attempts][-1] == EventAttempt.State.DEAD_LETTERED
        delays = [(a.next_attempt_at - a.failed_at).total_seconds() for a in attempts[:-1]]
        assert delays == sorted(delays) and delays[0] < delays[-1], delays
        for a, b in zip(attempts, attempts[1:], strict=False):
            assert b.failed_at >= a.next_attempt_at - timedelta(milliseconds=50)
        assert letter.consumer == "triage" and str(letter.event_id) == bad_event.event_id and letter.attempts == 4
        assert count(ExceptionEvent, event_type="DeadLettered", exception_id=bad) == 1
        assert applied(bad) == []

        fault.unlink()  # the operator fixes the fault, then replays
        out = StringIO()
        call_command("replay_dead_letters", "--id", str(letter.pk), stdout=out)
        assert "replayed 1" in out.getvalue()
        wait_until(lambda: applied(bad) == [1], 30)
    assert count(ProcessedEvent, consumer="triage") == 100
    with tenant_scope(TENANT):
        assert DeadLetter.objects.get().status == DeadLetter.Status.REPLAYED


def test_a_batch_whose_bulk_write_fails_is_written_again_exception_by_exception(tenant, log_dir, tmp_path):
    """The bulk write has no savepoint of its own: when it fails, the transaction is rolled back and the
    batch is run again with a savepoint per exception. The others commit; the bad one is retried."""
    unwritable = tmp_path / "unwritable"
    unwritable.touch()
    ids = make_exceptions(TENANT, 20)
    bad = ids[7]
    with tenant_scope(TENANT):
        store.append(
            tenant_id=TENANT,
            events=[
                store.NewEvent(i, "TriageRequested", {"exception_type": "unwritable" if i == bad else "x"}) for i in ids
            ],
            producer="intake",
        )
    policy = '{"triage": {"base_seconds": 0.5, "factor": 2, "cap_seconds": 5, "max_attempts": 6}}'
    env = {"PROBE_UNWRITABLE_FILE": str(unwritable), "SENTINAI_RETRY_POLICIES": policy}
    with WorkerProcess(["triage", "policy"], log_dir=log_dir, agents=IMPLEMENTATIONS, env=env) as worker:
        wait_until(lambda: count(ProcessedEvent, consumer="triage") == 19, 30)
        assert all(applied(i) == [1] for i in ids if i != bad)
        assert applied(bad) == []
        with tenant_scope(TENANT):
            attempt = EventAttempt.objects.get()
            retry = ExceptionEvent.objects.get(event_type="RetryScheduled")
        assert str(attempt.exception_id) == bad and "write failed" in attempt.error, attempt.error
        assert str(retry.exception_id) == bad
        # One PolicyEvaluationRequested per exception written, none for the rolled-back bulk write.
        assert count(ExceptionEvent, event_type="PolicyEvaluationRequested") == 19
        assert "writing exception by exception" in worker.log()

        unwritable.unlink()  # the data is fixed: the retry applies the event
        deadline = time.monotonic() + 30
        while applied(bad) != [1] and time.monotonic() < deadline:
            scheduler.tick_all_tenants()
            time.sleep(0.1)
        assert applied(bad) == [1]
    assert count(ProcessedEvent, consumer="triage") == 20
    assert count(ExceptionEvent, event_type="PolicyEvaluationRequested") == 20
    assert count(DeadLetter) == 0


@pytest.mark.django_db(transaction=True, databases=["default", "owner"])
def test_a_batch_stuck_on_a_lock_is_cut_off_by_the_statement_timeout_and_runs_again_once(tenant, log_dir):
    """A batch whose write waits on a lock held elsewhere is cancelled by the session's statement timeout
    (DB_STATEMENT_TIMEOUT_MS), rolled back and run again with backoff; when the lock is released it
    commits once. Without the bound it would hold its agent until Celery's time limit."""
    ids = make_exceptions(TENANT, 10)
    append_many(ids)
    env = {"DB_STATEMENT_TIMEOUT_MS": "1000"}
    with connections["owner"].cursor() as locker:
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE exception IN EXCLUSIVE MODE")  # reads go on; writes wait
        # Not waiting for "ready": a solo worker may take the batch before it logs that.
        worker = WorkerProcess(["triage", "policy"], log_dir=log_dir, agents=IMPLEMENTATIONS, env=env).launch()
        try:
            wait_until(lambda: worker.log().count("canceling statement due to statement timeout") >= 2, 30)
            assert count(ProcessedEvent, consumer="triage") == 0
            assert all(applied(i) == [] for i in ids)
            locker.execute("COMMIT")  # the lock is gone: the batch's next run commits
            wait_until(lambda: count(ProcessedEvent, consumer="policy") == 10, 60)
        finally:
            locker.execute("ROLLBACK")  # a no-op after the COMMIT
            worker.stop()
    assert all(applied(i) == [1] for i in ids)
    assert count(ExceptionEvent, event_type="PolicyEvaluationRequested") == 10
    assert count(DeadLetter) == 0


# --- poison messages -----------------------------------------------------------------------------


def test_an_undecodable_message_ends_in_the_dlq_is_recorded_and_does_not_block_the_queue(tenant, log_dir):
    ids = make_exceptions(TENANT, 3)
    with celery_app.connection_for_write() as conn:
        producer = Producer(conn.default_channel)
        producer.publish(
            b"{this is not json",
            exchange=routing.EXCHANGE.name,
            routing_key=routing.lane_queue("triage", TENANT),
            content_type="application/json",
            content_encoding="utf-8",
            headers={"id": "poison-1", "task": "agents.triage.handle_batch"},
        )
    # A well-formed Celery message whose body is not a batch is poison too.
    publish_body("triage", {"v": 1, "agent": "triage", "tenant_id": TENANT, "events": [{"nonsense": True}]})
    append_many(ids)
    with WorkerProcess(["triage", "policy"], log_dir=log_dir, agents=IMPLEMENTATIONS):
        wait_until(lambda: count(ProcessedEvent, consumer="policy") == 3, 30)
    assert all(applied(i) == [1] for i in ids)

    def drained():
        call_command("consume_dead_letters", "--once", stdout=StringIO())
        with all_tenants_scope():
            return DeadLetter.objects.filter(source=DeadLetter.Source.BROKER).count() == 2

    wait_until(drained, 30, interval=0.5)
    with all_tenants_scope():
        letters = {d.message_id: d for d in DeadLetter.objects.all()}
    undecodable = letters["poison-1"]
    assert undecodable.tenant_id is None and "this is not json" in undecodable.body
    assert undecodable.headers["x-death"][0]["reason"] == "rejected"
    assert undecodable.headers["x-death"][0]["queue"] == routing.lane_queue("triage", TENANT)
    (malformed,) = (d for d in letters.values() if d.message_id != "poison-1")
    assert malformed.tenant_id == TENANT and "nonsense" in malformed.body


def test_a_periodic_tick_that_expired_in_its_queue_is_not_recorded_as_a_dead_letter(tenant, log_dir):
    with celery_app.connection_for_write() as conn:
        routing.declare_topology(conn)
        Producer(conn.default_channel).publish(
            [[], {}, {}], exchange=routing.EXCHANGE.name, routing_key=routing.SCHEDULER_QUEUE, serializer="json",
            headers={"id": "tick-1", "task": "sentinai.scheduler.tick", "celery_beat_task": True}, expiration=0.05,
        )  # fmt: skip
    # No scheduler worker runs: the broker expires the tick and dead-letters it (reason "expired").
    wait_until(lambda: queue_depth(routing.SCHEDULER_QUEUE) == 0, 30, message="the tick to expire")
    wait_until(lambda: queue_depth(routing.DEAD_LETTER_QUEUE) == 1, 30, message="the tick to be dead-lettered")
    # A real poison message (a batch of nonsense), which is recorded.
    publish_body("triage", {"v": 1, "agent": "triage", "tenant_id": TENANT, "events": [{"nonsense": True}]})
    with WorkerProcess(["triage"], log_dir=log_dir, agents=IMPLEMENTATIONS):
        wait_until(lambda: queue_depth(routing.DEAD_LETTER_QUEUE) == 2, 30, message="the poison message")
    call_command("consume_dead_letters", "--once", stdout=StringIO())
    with all_tenants_scope():
        consumers = list(DeadLetter.objects.values_list("consumer", flat=True))
    assert [routing.agent_of(c) for c in consumers] == ["triage"], consumers
    assert queue_depth(routing.DEAD_LETTER_QUEUE) == 0


# --- broker outage -------------------------------------------------------------------------------
# A RabbitMQ restart with busy workers, HTTP ingest running and beat's relay is tests/e2e/test_faults.py,
# on a private broker (restarting the shared one here would disturb every other test and engineer).


# --- a broker that loses messages ----------------------------------------------------------------


def test_the_relay_re_offers_batches_a_broker_lost(tenant, log_dir, settings):
    ids = make_exceptions(TENANT, 10)
    append_many(ids)
    with tenant_scope(TENANT):
        assert Outbox.objects.get().published_at is not None
    with celery_app.connection_for_write() as conn:
        for lane in routing.agent_lanes("triage"):
            conn.default_channel.queue_purge(lane)
    settings.SENTINAI = {**settings.SENTINAI, "OUTBOX_REDELIVER_SECONDS": 0}
    assert outbox.relay_all_tenants() == 1
    with WorkerProcess(["triage", "policy"], log_dir=log_dir, agents=IMPLEMENTATIONS):
        wait_until(lambda: count(ProcessedEvent, consumer="policy") == 10, 30)
    assert all(applied(i) == [1] for i in ids)


def queue_depth(queue: str) -> int:
    with celery_app.connection_for_write() as conn:
        return conn.default_channel.queue_declare(queue=queue, passive=True).message_count


def test_the_fast_path_publishes_a_batch_stamped_at_commit_without_a_second_transaction(tenant, monkeypatch):
    monkeypatch.setattr(outbox, "_paused_until", 0.0)  # restored after the test, which pauses the fast path
    ids = make_exceptions(TENANT, 3)
    lane = routing.lane_queue("triage", TENANT)
    with CaptureQueriesContext(connection) as queries:
        append_many(ids)
    assert queue_depth(lane) == 1
    with tenant_scope(TENANT):
        row = Outbox.objects.get()
    assert row.published_at is not None and row.publish_count == 1
    assert not [q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "outbox"')]
    # A send that fails takes the stamp back: the relay sends the row after the grace period.
    monkeypatch.setattr(outbox, "_send_each", lambda rows, envelopes, sent: (_ for _ in ()).throw(OSError("down")))
    append_many(make_exceptions(TENANT, 2))
    with tenant_scope(TENANT):
        failed = Outbox.objects.exclude(pk=row.pk).get()
    assert failed.published_at is None and failed.publish_count == 0
    assert queue_depth(lane) == 1
    # Paused after that failure, the fast path leaves new rows unstamped for the relay.
    append_many(make_exceptions(TENANT, 2))
    with tenant_scope(TENANT):
        assert Outbox.objects.filter(published_at__isnull=True, publish_count=0).count() == 2


def test_the_relay_re_sends_by_age_and_send_count_whatever_the_queue_holds(tenant, settings):
    ids = make_exceptions(TENANT, 2)
    append_many(ids[:1])
    append_many(ids[1:])  # two batches published, both waiting in the queue: no worker runs
    lane = routing.lane_queue("triage", TENANT)
    assert queue_depth(lane) == 2
    settings.SENTINAI = {**settings.SENTINAI, "OUTBOX_REDELIVER_SECONDS": 60}
    long_ago = timezone.now() - timedelta(seconds=61)
    with tenant_scope(TENANT):
        first, second = Outbox.objects.order_by("id")
        Outbox.objects.filter(pk=first.pk).update(published_at=long_ago, publish_count=1)
        # Sent three times already: the next re-send waits 4 x 60 s.
        Outbox.objects.filter(pk=second.pk).update(published_at=long_ago, publish_count=3)
    assert outbox.relay_all_tenants() == 1, "a full queue must not hold back a batch owed for 61 s"
    assert outbox.relay_all_tenants() == 0, "the re-sent batch waits 2 x 60 s before the next re-send"
    with tenant_scope(TENANT):
        assert Outbox.objects.get(pk=first.pk).publish_count == 2
        Outbox.objects.filter(pk=second.pk).update(published_at=timezone.now() - timedelta(seconds=241))
    assert outbox.relay_all_tenants() == 1
    assert queue_depth(lane) == 4
    with tenant_scope(TENANT):
        assert Outbox.objects.get(pk=second.pk).publish_count == 4


def test_an_outbox_row_whose_events_cannot_be_loaded_is_dead_lettered_with_its_reason(tenant, caplog):
    ghost = str(uuid.uuid4())
    before = counter("sentinai_dead_letters_total", agent="triage", source="outbox")
    with tenant_scope(TENANT), transaction.atomic():
        (row,) = outbox.offer(TENANT, {"triage": [ghost]})
    with tenant_scope(TENANT):
        Outbox.objects.filter(pk=row.id).update(created_at=timezone.now() - timedelta(minutes=1))
    assert outbox.relay_all_tenants() == 0
    with all_tenants_scope():
        letter = DeadLetter.objects.get(source=DeadLetter.Source.OUTBOX)
        assert not Outbox.objects.exists(), "the row leaves the outbox: it is not skipped at every tick"
    assert letter.tenant_id == TENANT and letter.consumer == "triage" and letter.event_ids == [ghost]
    assert letter.message_id == f"outbox:{row.id}" and ghost in letter.error and "cannot be loaded" in letter.error
    assert letter.status == DeadLetter.Status.OPEN
    assert counter("sentinai_dead_letters_total", agent="triage", source="outbox") == before + 1
    assert outbox.relay_all_tenants() == 0
    with all_tenants_scope():
        assert DeadLetter.objects.count() == 1


def test_a_message_for_an_unknown_tenant_is_dead_lettered(tenant, log_dir):
    event_id = uuid.uuid4()
    publish_body(
        "triage",
        {
            "v": 1,
            "agent": "triage",
            "tenant_id": "nobody",
            "outbox_ids": [],
            "events": [
                {
                    "event_id": str(event_id),
                    "event_type": "TriageRequested",
                    "exception_id": str(uuid.uuid4()),
                    "sequence": 1,
                    "producer": "api",
                    "payload": {},
                }
            ],
        },
    )
    with WorkerProcess(["triage"], log_dir=log_dir, agents=IMPLEMENTATIONS):

        def recorded():
            call_command("consume_dead_letters", "--once", stdout=StringIO())
            with all_tenants_scope():
                return DeadLetter.objects.filter(tenant_id="nobody").exists()

        wait_until(recorded, 30, interval=0.5)
    with all_tenants_scope():
        assert ProcessedEvent.objects.count() == 0


# --- coalescing ----------------------------------------------------------------------------------


def test_small_messages_waiting_in_a_queue_are_coalesced_into_few_batches(tenant, log_dir):
    ids = make_exceptions(TENANT, 60)
    for exception_id in ids:  # sixty one-event messages wait in the queue
        append(TENANT, exception_id, "TriageRequested", {"exception_type": "x"})
    with WorkerProcess(["triage"], log_dir=log_dir, agents=IMPLEMENTATIONS, env={"SENTINAI_COALESCE": "true"}):
        wait_until(lambda: count(ProcessedEvent, consumer="triage") == 60, 30)
    assert all(applied(i) == [1] for i in ids)
    with tenant_scope(TENANT):
        # processed_at is the transaction's start time: one value per batch transaction.
        transactions = ProcessedEvent.objects.filter(consumer="triage").values("processed_at").distinct().count()
    assert transactions <= 5, f"60 messages took {transactions} transactions"
    assert count(Outbox, queue="triage") == 0


def test_coalescing_asks_an_empty_queue_once_per_idle_window_and_stops_at_the_last_message(tenant, monkeypatch):
    from kombu import Queue

    from sentinai.pipeline import coalesce

    gets = []
    real_get = Queue.get
    monkeypatch.setattr(Queue, "get", lambda self, *a, **k: gets.append(self.name) or real_get(self, *a, **k))
    monkeypatch.setitem(settings_module.SENTINAI, "COALESCE_IDLE_SECONDS", 1.0)
    monkeypatch.setattr(coalesce, "_idle_until", {})
    lane, task = routing.lane_queue("triage", TENANT), message.task_name("triage")
    assert coalesce.fetch(lane, task, max_events=100) == []
    assert len(gets) == 1
    for _ in range(3):
        publish_body("triage", {"tenant_id": TENANT, "events": [{}]})
    wait_until(lambda: queue_depth(lane) == 3, 10)
    # Found empty a moment ago: not asked again within the window, whatever has arrived since.
    assert coalesce.fetch(lane, task, max_events=100) == []
    assert len(gets) == 1
    time.sleep(1.05)
    taken = coalesce.fetch(lane, task, max_events=100)
    try:
        assert len(taken) == 3
        # The third basic.get-ok said no message was left: no fourth, empty, get.
        assert len(gets) == 4
    finally:
        for item in taken:
            item.ack()


def test_an_agents_own_batch_size_cuts_its_messages_and_no_other_agents(tenant, settings):
    """AGENT_BATCH_SIZES: the tool queue's messages carry at most its size, so workers that make one
    call at a time share a backlog; other queues keep BATCH_SIZE."""
    settings.SENTINAI = {**settings.SENTINAI, "BATCH_SIZE": 500, "AGENT_BATCH_SIZES": {"tool": 2}}
    ids = [str(uuid.uuid4()) for _ in range(5)]
    with tenant_scope(TENANT), transaction.atomic():
        rows = outbox.offer(TENANT, {"tool": ids, "triage": ids})
        transaction.set_rollback(True)  # the events do not exist: only the rows' shape is looked at
    assert sorted(len(r.event_ids) for r in rows if r.queue == "tool") == [1, 2, 2]
    assert [len(r.event_ids) for r in rows if r.queue == "triage"] == [5]
    assert [e for r in rows if r.queue == "tool" for e in r.event_ids] == ids  # in order, each once
