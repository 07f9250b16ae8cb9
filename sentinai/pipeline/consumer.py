"""The batch consumer framework: how every agent runs (docs/architecture.md, "The unit of transport: batches").

One broker message carries a batch of events of one tenant for one agent. `handle_batch` processes it
in one database transaction, scoped to the tenant:

1. lock the exception rows of the batch (sorted by id: concurrent batches cannot deadlock, and every
   consumer of one exception is serialised behind that lock);
2. idempotency: insert (consumer, event_id) for the whole batch into processed_event with
   ON CONFLICT DO NOTHING RETURNING; only returned events are new;
3. ordering: an event is applied only after its predecessor for this consumer (fixed at append time
   in metadata.prev) was applied, earlier in this batch or before; otherwise it is parked and
   re-offered as soon as the predecessor is applied;
4. decide: the agent's pure decision function, event by event, under try/except - one failing event
   never fails its batch. A failed event gets a retry record (exponential backoff with jitter) and a
   RetryScheduled event, or after its last attempt a DeadLettered event and a dead-letter row;
5. write everything in bulk (projections, new events, outbox rows), with no savepoint of its own: a
   savepoint per batch is two more round trips, and on PostgreSQL each distinct savepoint name is a
   statement of its own to pg_stat_statements, which then evicts entries all day. Should that bulk
   write fail, the whole transaction is rolled back and the batch is run again, each exception's
   share under its own savepoint, so one bad event still cannot take the others down;
6. delete the consumed outbox rows, commit; the new events' outbox rows are published after commit;
   the broker message is acked after that (acks_late).

On PostgreSQL steps 1-3 go to the server in one pipeline (bulk.pipeline: one round trip), and so do
steps 5-6 up to the commit: a batch costs four round trips plus the agent's own reads, where each
statement used to cost one (docs/performance.md, "Fewer round trips per batch").
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Max
from django.utils import timezone

from sentinai.eventstore import outbox, store
from sentinai.eventstore.events import (
    DeadLettered,
    Envelope,
    RetryScheduled,
    derived_event_id,
)

# The message format is the event store's; re-exported for the task runner (consumer.decode, ...).
from sentinai.eventstore.message import IncomingBatch, PoisonMessage, decode, merge  # noqa: F401
from sentinai.kernel import bulk, ids, tracing
from sentinai.kernel.logs import log_context
from sentinai.models import DeadLetter, EventAttempt, Outbox, ParkedEvent, ProcessedEvent, delivery_key
from sentinai.pipeline.agent import Agent, Batch, Decision, PermanentError, Update, Upsert
from sentinai.pipeline.retry import policy_for
from sentinai.tenancy import admission, tenants
from sentinai.tenancy.scope import tenant_scope

logger = logging.getLogger(__name__)

# A bulk write that fails for a data reason falls back to per-exception writes; a lost connection
# or a deadlock fails the batch (the broker redelivers it).
_WRITE_ERRORS = (DatabaseError,)
_CONNECTION_ERRORS = (OperationalError, InterfaceError)


@dataclass(slots=True)
class Report:
    """What happened to a batch; logged, counted in metrics, asserted on in tests."""

    received: int = 0
    duplicates: int = 0
    applied: int = 0
    parked: int = 0
    retried: int = 0
    dead_lettered: int = 0
    released: int = 0
    emitted: int = 0
    fallback: bool = False
    applied_ids: list[str] = field(default_factory=list)
    applied_types: Counter = field(default_factory=Counter)
    # (terminal status, seconds since the exception was accepted) for exceptions this batch closed
    closed: list[tuple[str, float]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(slots=True)
class _Outcome:
    event: Envelope
    decision: Decision | None = None
    error: str | None = None
    permanent: bool = False
    waiting_for: str | None = None


def handle_batch(agent: Agent, body: Any) -> Report:
    """Process one message for `agent`. Raises PoisonMessage for a message that cannot be read."""
    return handle_incoming(agent, decode(agent.name, body))


def handle_incoming(agent: Agent, incoming: IncomingBatch) -> Report:
    """Process a decoded batch in one transaction (retried on deadlock); traced per exception when
    tracing is on (sentinai/kernel/tracing.py)."""
    if not tracing.enabled():
        return _handle_incoming(agent, incoming)
    with tracing.batch_spans(agent.name, incoming.tenant_id, incoming.events):
        return _handle_incoming(agent, incoming)


class _BulkWriteFailed(Exception):
    """The bulk write of a batch failed for a data reason; its transaction is rolled back."""


def _handle_incoming(agent: Agent, incoming: IncomingBatch) -> Report:
    effects: dict[str, Any] = {}
    if type(agent).perform is not Agent.perform:
        effects = _perform(agent, incoming)
    each, attempt = False, 1
    while True:
        try:
            return _process(agent, incoming, effects, each=each)
        except _BulkWriteFailed as failed:
            # Run again with a savepoint per exception: the decisions are taken again on the rolled-back
            # state; the effects (calls that left the process) are reused, never performed twice.
            with log_context(exception_ids=sorted({e.exception_id for e in incoming.events})):
                logger.warning(
                    "bulk write of a %s batch failed (%s); writing exception by exception", agent.name, failed.__cause__
                )
            each = True
        except DatabaseError as exc:
            # Deadlocks and serialisation failures are transient by definition: run the batch again.
            if attempt < 3 and getattr(getattr(exc, "__cause__", None), "sqlstate", None) in ("40P01", "40001"):
                with log_context(exception_ids=sorted({e.exception_id for e in incoming.events})):
                    logger.warning("batch for %s hit %s; running it again", agent.name, exc)
                attempt += 1
                continue
            raise


def _perform(agent: Agent, incoming: IncomingBatch) -> dict[str, Any]:
    event_ids = [e.event_id for e in incoming.events]
    with tenant_scope(incoming.tenant_id):
        done = {str(i) for i in ProcessedEvent.objects.of(agent.name, event_ids).values_list("event_id", flat=True)}
        tenant = tenants.get(incoming.tenant_id)
        if tenant is None:
            raise PoisonMessage(f"unknown tenant {incoming.tenant_id!r}")
    pending = [e for e in incoming.events if e.event_id not in done]
    if not pending:
        return {}
    batch = Batch(agent=agent.name, tenant_id=incoming.tenant_id, tenant=tenant, now=timezone.now(), events=pending)
    return agent.perform(batch, pending)


def _applied_later(consumer: str, event_ids: set[str]):
    """Which of these events `consumer` has applied: a function that gives them (read later, in a
    pipeline)."""
    if not event_ids:
        return set
    if not bulk.is_postgres():
        found = {str(i) for i in ProcessedEvent.objects.of(consumer, event_ids).values_list("event_id", flat=True)}
        return lambda: found
    rows = bulk.select_later(
        f"SELECT event_id FROM processed_event WHERE id {bulk.ANY_UUIDS}",
        [bulk.uuid_list(delivery_key(consumer, i) for i in event_ids)],
    )
    return lambda: {row[0] for row in rows()}


def _claim_later(consumer: str, tenant_id: str, event_ids: list[str]):
    """Claim the events for `consumer` (processed_event rows, ON CONFLICT DO NOTHING); returns a
    function that gives the ids claimed now, i.e. not applied before."""
    rows = [
        {"id": delivery_key(consumer, i), "consumer": consumer, "event_id": i, "tenant_id": tenant_id}
        for i in event_ids
    ]
    if not rows:
        return set
    if not bulk.is_postgres():
        claimed = {_id(r[0]) for r in bulk.insert(ProcessedEvent, rows, conflict=("id",), returning=("event_id",))}
        return lambda: claimed
    sql, payload = bulk.insert_sql(ProcessedEvent, rows)
    inserted = bulk.select_later(f'{sql} ON CONFLICT ("id") DO NOTHING RETURNING "event_id"', [payload])
    return lambda: {r[0] for r in inserted()}


def _unclaim(consumer: str, event_ids: list[str]) -> None:
    if event_ids:
        ProcessedEvent.objects.of(consumer, event_ids).delete()


def _id(value: Any) -> str:
    return value if isinstance(value, str) and len(value) == 36 else ids.parse(value)


def _process(agent: Agent, incoming: IncomingBatch, effects: dict[str, Any], *, each: bool = False) -> Report:
    """The batch in one transaction. A bulk write that fails for a data reason raises _BulkWriteFailed
    out of the transaction (rolling it back); with `each`, every exception's share is written under
    its own savepoint instead."""
    report = Report(received=len(incoming.events))
    tenant_id = incoming.tenant_id
    events = list({e.event_id: e for e in incoming.events}.values())
    with tenant_scope(tenant_id):
        tenant = tenants.get(tenant_id)
        if tenant is None:
            raise PoisonMessage(f"unknown tenant {tenant_id!r}")
        # Lock, read, claim and look up the predecessors (the ordering gate) in one round trip. Every
        # event is claimed before the locks tell which exceptions exist; an event of none (an orphan)
        # is unclaimed again when it is dead-lettered.
        prevs = {p for e in events if (p := e.prev_for(agent.name)) is not None} - {e.event_id for e in events}
        with bulk.pipeline():
            locked = store.lock_streams_later(tenant_id, {e.exception_id for e in events}, agent.exception_fields)
            claimed_later = _claim_later(agent.name, tenant_id, [e.event_id for e in events])
            applied_later = _applied_later(agent.name, prevs)
        streams, claimed, applied_before = locked(), claimed_later(), applied_later()
        orphans = [e for e in events if e.exception_id not in streams]
        fresh = sorted(
            (e for e in events if e.event_id in claimed and e.exception_id in streams),
            key=lambda e: (e.exception_id, e.sequence),
        )
        report.duplicates = len(events) - len(orphans) - len(fresh)

        batch = Batch(
            agent=agent.name, tenant_id=tenant_id, tenant=tenant, now=timezone.now(), events=fresh, effects=effects
        )
        outcomes = _decide(agent, batch, streams, fresh, applied_before)
        if orphans:
            _dead_letter_orphans(agent.name, tenant_id, orphans)
            _unclaim(agent.name, [e.event_id for e in orphans if e.event_id in claimed])
        if each:
            report = _write_each(agent, batch, streams, outcomes, report)
            consumed = _consume_later(agent.name, incoming.outbox_ids, report.applied_ids)
        else:
            try:
                applied, new_events = _settle(agent, batch, streams, outcomes, report)
                # From here on every statement is the batch's own bulk SQL, sent in one pipeline: it
                # waits for the events' insert (their recorded_at) and once at its end
                # (docs/performance.md, "Fewer round trips per batch").
                with bulk.pipeline():
                    _write_applied(agent, batch, streams, applied, new_events, report)
                    consumed = _consume_later(agent.name, incoming.outbox_ids, report.applied_ids)
            except _WRITE_ERRORS as exc:
                if isinstance(exc, _CONNECTION_ERRORS):
                    raise
                # The transaction is aborted: nothing more runs in it (not even a nested scope's reset).
                transaction.set_rollback(True)
                raise _BulkWriteFailed() from exc
        report.released = _release(agent.name, tenant_id, consumed())
        report.dead_lettered += len(orphans)
    return report


def _decide(
    agent: Agent, batch: Batch, streams: dict[str, store.Stream], fresh: list[Envelope], applied_before: set[str]
) -> list[_Outcome]:
    """The agent's decisions, event by event; `applied_before`: the predecessors applied before this batch."""
    states = {xid: dict(s.fields) for xid, s in streams.items()}
    agent.load(batch, states)
    applied: set[str] = set()
    outcomes = []
    for event in fresh:
        prev = event.prev_for(agent.name)
        if prev is not None and prev not in applied_before and prev not in applied:
            outcomes.append(_Outcome(event, waiting_for=prev))
            continue
        state = states[event.exception_id]
        try:
            decision = agent.decide(batch, state, event)
            agent.evolve(batch, state, decision)
        except PermanentError as exc:
            outcomes.append(_Outcome(event, error=_describe(exc), permanent=True))
            continue
        except Exception as exc:  # any failure of one event is isolated to that event
            with log_context(exception_id=event.exception_id, event_id=event.event_id, event_type=event.event_type):
                logger.warning("decision failed: %s", _describe(exc))
            outcomes.append(_Outcome(event, error=_describe(exc)))
            continue
        outcomes.append(_Outcome(event, decision=decision))
        applied.add(event.event_id)
    return outcomes


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def _write_each(agent, batch, snapshot, outcomes, report) -> Report:
    """Slow path, after a failed bulk write: each exception's outcomes under their own savepoint. An
    exception whose write fails gets its first applied event retried and the rest parked behind it.
    `snapshot` holds the streams as locked; each exception's entry is replaced by what was written."""
    report = Report(received=report.received, duplicates=report.duplicates, fallback=True)
    by_exception: dict[str, list[_Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_exception[outcome.event.exception_id].append(outcome)
    for xid, group in by_exception.items():
        streams = {xid: snapshot[xid].copy()}
        try:
            with transaction.atomic():
                _write(agent, batch, streams, group, report)
            snapshot[xid] = streams[xid]
            continue
        except _WRITE_ERRORS as exc:
            if isinstance(exc, _CONNECTION_ERRORS):
                raise
            error = f"write failed: {_describe(exc)}"
        degraded, blocker = [], None
        for outcome in group:
            if outcome.decision is not None and blocker is None:
                blocker = outcome.event.event_id
                degraded.append(_Outcome(outcome.event, error=error))
            elif blocker is not None and outcome.decision is not None:
                degraded.append(_Outcome(outcome.event, waiting_for=blocker))
            else:
                degraded.append(outcome)
        streams = {xid: snapshot[xid].copy()}
        with transaction.atomic():
            _write(agent, batch, streams, degraded, report)
        snapshot[xid] = streams[xid]
    return report


def _write(
    agent: Agent, batch: Batch, streams: dict[str, store.Stream], outcomes: list[_Outcome], report: Report
) -> None:
    applied, new_events = _settle(agent, batch, streams, outcomes, report)
    _write_applied(agent, batch, streams, applied, new_events, report)


def _settle(
    agent: Agent, batch: Batch, streams: dict[str, store.Stream], outcomes: list[_Outcome], report: Report
) -> tuple[list[tuple[Envelope, Decision, str]], list[store.NewEvent]]:
    """Retries, dead letters and parked events for the outcomes that were not applied (ORM writes,
    outside any pipeline); returns what is to be applied, as (event, decision, salt), and the events
    the failures emit."""
    tenant_id = batch.tenant_id
    failed = [o for o in outcomes if o.error is not None]
    parked = [o for o in outcomes if o.waiting_for is not None]
    new_events: list[store.NewEvent] = []
    final_decisions: dict[str, Decision] = {}
    if failed:
        new_events, final_decisions = _fail(agent, batch, streams, failed, report)
    # (event, decision, salt): a decision taken on a dead letter emits under its own ids, so that a
    # later successful replay of the event does not collide with them.
    applied = [(o.event, o.decision, "") for o in outcomes if o.decision is not None]
    applied += [
        (o.event, final_decisions[o.event.event_id], "dl") for o in failed if o.event.event_id in final_decisions
    ]
    _unclaim(agent.name, [o.event.event_id for o in (*failed, *parked) if o.event.event_id not in final_decisions])
    if parked:
        bulk.insert(
            ParkedEvent,
            [
                {
                    "tenant_id": tenant_id,
                    "consumer": agent.name,
                    "event_id": o.event.event_id,
                    "exception_id": o.event.exception_id,
                    "waiting_for": o.waiting_for,
                    "waiting_key": delivery_key(agent.name, o.waiting_for),
                }
                for o in parked
            ],
            conflict=("consumer", "event_id"),
        )
        report.parked += len(parked)
    return applied, new_events


def _write_applied(
    agent: Agent,
    batch: Batch,
    streams: dict[str, store.Stream],
    applied: list[tuple[Envelope, Decision, str]],
    new_events: list[store.NewEvent],
    report: Report,
) -> None:
    """The applied decisions' records and projection changes, and every new event, in bulk."""
    tenant_id = batch.tenant_id
    upserts: dict[tuple, list[Upsert]] = defaultdict(list)
    updates: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    closed = 0
    for cause, decision, salt in applied:
        report.applied_types[cause.event_type] += 1
        if decision.exception:
            streams[cause.exception_id].changes.update(decision.exception)
            if "closed_at" in decision.exception:
                closed += 1
                created = streams[cause.exception_id].fields.get("created_at")
                if created is not None:
                    seconds = (decision.exception["closed_at"] - created).total_seconds()
                    report.closed.append((decision.exception.get("status", "closed"), seconds))
        for record in decision.records:
            if isinstance(record, Update):
                pk_name = record.model._meta.pk.name
                updates[(record.model, tuple(record.values))].append({pk_name: record.pk, **record.values})
            else:
                upserts[(record.model, record.unique, tuple(record.values))].append(record)
        for index, emit in enumerate(decision.emit):
            new_events.append(
                store.NewEvent(
                    exception_id=emit.exception_id or cause.exception_id,
                    event_type=emit.event_type,
                    payload=emit.payload,
                    causation_id=cause.event_id,
                    event_id=derived_event_id(agent.name, cause.event_id, f"{salt}{index}"),
                )
            )
    for (model, unique, names), records in upserts.items():
        _upsert(model, unique, names, records)
    for (model, _names), rows in updates.items():
        bulk.update(model, model._meta.pk.name, rows)
    if closed:
        # Exceptions that reached a terminal state leave the tenant's in-flight count.
        transaction.on_commit(partial(admission.release, tenant_id, closed), robust=True)

    envelopes = store.append(tenant_id=tenant_id, events=new_events, producer=agent.name, streams=streams)
    report.emitted += len(envelopes)
    applied_ids = [cause.event_id for cause, _, _ in applied]
    report.applied += len(applied_ids)
    report.applied_ids.extend(applied_ids)


def _upsert(model, unique: tuple[str, ...], names: tuple[str, ...], records: list[Upsert]) -> None:
    update_fields = [n for n in names if n not in unique and n != model._meta.pk.name]
    if bulk.is_postgres():
        bulk.upsert(model, [r.values for r in records], unique=unique, update=update_fields)
        return
    objs = [model(**r.values) for r in records]
    if update_fields:
        model.objects.bulk_create(objs, update_conflicts=True, unique_fields=list(unique), update_fields=update_fields)
    else:
        model.objects.bulk_create(objs, ignore_conflicts=True)


def _consume_later(consumer: str, outbox_ids: list[int], applied_ids: list[str]):
    """Delete the consumed outbox rows and take the parked events whose predecessor was just applied;
    on PostgreSQL in one statement, whose answer (the released ids) the returned function reads."""
    keys = [delivery_key(consumer, i) for i in applied_ids]
    if bulk.is_postgres():
        taken = bulk.select_later(
            "WITH consumed AS (DELETE FROM outbox WHERE id = ANY(%s::bigint[])) "
            f"DELETE FROM parked_event WHERE waiting_key {bulk.ANY_UUIDS} RETURNING event_id",
            [outbox_ids, bulk.uuid_list(keys)],
        )
        return lambda: [row[0] for row in taken()]
    Outbox.objects.filter(id__in=outbox_ids).delete()
    clause, params = bulk.in_clause(keys, uuids=True)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM parked_event WHERE waiting_key {clause} RETURNING event_id", params)
        released = [_id(row[0]) for row in cursor.fetchall()]
    return lambda: released


def _release(consumer: str, tenant_id: str, released: list[str]) -> int:
    """Re-offer parked events whose predecessor was applied."""
    if released:
        outbox.offer(tenant_id, {consumer: released})
    return len(released)


def _fail(
    agent: Agent, batch: Batch, streams, failed: list[_Outcome], report: Report
) -> tuple[list[store.NewEvent], dict[str, Decision]]:
    """Retry records and RetryScheduled events, or dead letters, for the failed events; and the
    agent's final decisions for the dead-lettered ones that have one."""
    policy = policy_for(agent.name)
    failed_ids = [o.event.event_id for o in failed]
    last_attempt = {
        str(event_id): n
        for event_id, n in EventAttempt.objects.filter(consumer=agent.name, event_id__in=failed_ids)
        .values("event_id")
        .annotate(n=Max("attempt"))
        .values_list("event_id", "n")
    }
    # A replayed dead letter starts a new round of attempts after the ones it already used.
    round_base = {
        str(event_id): attempts
        for event_id, attempts in DeadLetter.objects.filter(
            source=DeadLetter.Source.HANDLER, consumer=agent.name, event_id__in=failed_ids
        ).values_list("event_id", "attempts")
    }
    new_events = []
    attempts = []
    final_decisions = {}
    for outcome in failed:
        event = outcome.event
        attempt = last_attempt.get(event.event_id, 0) + 1
        in_round = attempt - round_base.get(event.event_id, 0)
        final = outcome.permanent or in_round >= policy.max_attempts
        next_at = None if final else batch.now + timedelta(seconds=policy.delay(in_round))
        attempts.append(
            {
                "tenant_id": batch.tenant_id,
                "consumer": agent.name,
                "event_id": event.event_id,
                "exception_id": event.exception_id,
                "attempt": attempt,
                "error": outcome.error,
                "next_attempt_at": next_at,
                "state": EventAttempt.State.DEAD_LETTERED if final else EventAttempt.State.SCHEDULED,
            }
        )
        with log_context(
            exception_id=event.exception_id, event_id=event.event_id, event_type=event.event_type, attempt=attempt
        ):
            if final:
                logger.error("dead-lettering after attempt %d: %s", attempt, outcome.error)
            else:
                logger.warning("retrying at %s after attempt %d: %s", next_at.isoformat(), attempt, outcome.error)
        if not final:
            report.retried += 1
            new_events.append(
                store.NewEvent(
                    exception_id=event.exception_id,
                    event_type="RetryScheduled",
                    payload=RetryScheduled(
                        consumer=agent.name,
                        failed_event_id=event.event_id,
                        failed_event_type=event.event_type,
                        attempt=attempt,
                        error=outcome.error,
                        next_attempt_at=next_at.isoformat(),
                    ),
                    causation_id=event.event_id,
                    event_id=derived_event_id(agent.name, event.event_id, f"retry:{attempt}"),
                )
            )
            continue
        report.dead_lettered += 1
        letter, _ = DeadLetter.objects.update_or_create(
            source=DeadLetter.Source.HANDLER,
            consumer=agent.name,
            event_id=event.event_id,
            defaults={
                "tenant_id": batch.tenant_id,
                "exception_id": event.exception_id,
                "event_ids": [event.event_id],
                "error": outcome.error,
                "attempts": attempt,
                "status": DeadLetter.Status.OPEN,
            },
        )
        new_events.append(
            store.NewEvent(
                exception_id=event.exception_id,
                event_type="DeadLettered",
                payload=DeadLettered(
                    consumer=agent.name,
                    failed_event_id=event.event_id,
                    failed_event_type=event.event_type,
                    attempts=attempt,
                    error=outcome.error,
                    dead_letter_id=letter.pk,
                ),
                causation_id=event.event_id,
                event_id=derived_event_id(agent.name, event.event_id, f"dead:{attempt}"),
            )
        )
        # The agent may turn the dead letter into a final decision (e.g. the tool agent marks its
        # execution dead_lettered and tells the playbook). That counts as applying the event.
        state = dict(streams[event.exception_id].fields) if event.exception_id in streams else {}
        final_decision = agent.on_dead_letter(batch, state, event, outcome.error)
        if final_decision is not None:
            final_decisions[event.event_id] = final_decision
    bulk.insert(EventAttempt, attempts)
    return new_events, final_decisions


def _dead_letter_orphans(consumer: str, tenant_id: str, orphans: list[Envelope]) -> None:
    for event in orphans:
        DeadLetter.objects.update_or_create(
            source=DeadLetter.Source.HANDLER,
            consumer=consumer,
            event_id=event.event_id,
            defaults={
                "tenant_id": tenant_id,
                "exception_id": event.exception_id,
                "event_ids": [event.event_id],
                "error": f"exception {event.exception_id} does not exist for tenant {tenant_id}",
                "status": DeadLetter.Status.OPEN,
            },
        )
