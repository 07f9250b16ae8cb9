"""The outbox: what is owed to agent queues, and the only code that sends to the broker.

`offer` owes stored events to agent queues inside the appending transaction: one outbox row per batch
of at most BATCH_SIZE events (the agent's AGENT_BATCH_SIZES entry if set) of one tenant for one
queue. That is how new events (the event store's append), retries, released parked events and
replays reach an agent.

Fast path: after the appending transaction commits, its outbox rows are published (one message per
row, a batch of events of one tenant for one agent, to that tenant's lane of the agent:
`routing.lane_queue`) with publisher confirms. The rows are written already stamped `published_at`
(send count 1) for that send, so that a successful publish costs no second transaction; a publish
that fails (or that the fast path skips, paused after a broker failure) takes the stamp back, and the
relay sends the rows after OUTBOX_GRACE_SECONDS. The consuming agent deletes the row when it has
processed the batch. The one case the stamp gets wrong - a process that dies between its commit and
its publish - is a published row not consumed, which the relay re-sends after
OUTBOX_REDELIVER_SECONDS: late, never lost.

Relay (the scheduler, every tick): republishes rows the fast path never published (process crash
between commit and publish, broker outage) and rows published but not consumed in time, whatever the
depth of their queue (lost by the broker: a purged queue, a restarted in-process broker), each later
re-send waiting twice as long as the one before (bounded). A row whose events cannot be loaded is
dead-lettered (source "outbox") instead of being skipped at every tick.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from kombu import pools as kombu_pools

from config import routing
from config.celery import app as celery_app
from sentinai.eventstore import message
from sentinai.eventstore.events import Envelope
from sentinai.eventstore.reader import load_envelopes
from sentinai.kernel import bulk, metrics
from sentinai.models import Outbox
from sentinai.tenancy.scope import all_tenants_scope, tenant_scope

logger = logging.getLogger(__name__)

CONFIRM_TIMEOUT = 10.0
# After a failed fast-path publish, leave publishing to the relay for this long, so requests do not
# each wait on a broker that is down.
FAST_PATH_PAUSE_SECONDS = 5.0

_paused_until = 0.0


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    tenant_id: str
    queue: str
    event_ids: tuple[str, ...]

    @classmethod
    def of(cls, row: Outbox) -> OutboxRow:
        return cls(id=row.id, tenant_id=row.tenant_id, queue=row.queue, event_ids=tuple(row.event_ids))


def offer(
    tenant_id: str,
    event_ids_by_queue: dict[str, Sequence[str]],
    *,
    envelopes: Sequence[Envelope] = (),
) -> list[OutboxRow]:
    """Owe stored events to agent queues: outbox rows (batches of at most routing.batch_size), published
    after the caller's transaction commits. `envelopes` spares the publisher reading them back."""
    fast, inserted = _insert(tenant_id, event_ids_by_queue)
    rows = _rows(tenant_id, inserted())
    if fast and rows:
        transaction.on_commit(partial(publish_after_commit, rows, {e.event_id: e for e in envelopes}), robust=True)
    return rows


def offer_deferred(
    tenant_id: str,
    event_ids_by_queue: dict[str, Sequence[str]],
    *,
    envelopes: Sequence[Envelope] = (),
) -> None:
    """`offer` for a caller in a pipeline (bulk.pipeline): the new rows' ids are read by the publisher
    after commit, so the insert never waits for its answer."""
    fast, inserted = _insert(tenant_id, event_ids_by_queue)
    if fast:
        transaction.on_commit(
            partial(_publish_deferred, tenant_id, inserted, {e.event_id: e for e in envelopes}), robust=True
        )


def _insert(tenant_id: str, event_ids_by_queue: dict[str, Sequence[str]]) -> tuple[bool, Callable[[], list]]:
    if not connection.in_atomic_block:
        raise RuntimeError("the outbox is written only inside the caller's transaction")
    # Stamped for the fast path's send (see the module's docstring), unless the fast path is paused.
    fast = time.monotonic() >= _paused_until
    stamp = {"published_at": timezone.now(), "publish_count": 1} if fast else {}
    wanted = []
    for queue, event_ids in event_ids_by_queue.items():
        batch_size = routing.batch_size(queue)
        for start in range(0, len(event_ids), batch_size):
            wanted.append(
                {
                    "tenant_id": tenant_id,
                    "queue": queue,
                    "event_ids": list(event_ids[start : start + batch_size]),
                    **stamp,
                }
            )
    if not wanted:
        return False, list
    return fast, bulk.insert_later(Outbox, wanted, returning=["id", "queue", "event_ids"])


def _rows(tenant_id: str, inserted: Sequence[tuple]) -> list[OutboxRow]:
    return [
        OutboxRow(
            id=row_id,
            tenant_id=tenant_id,
            queue=queue,
            event_ids=tuple(orjson.loads(event_ids) if isinstance(event_ids, (str, bytes)) else event_ids),
        )
        for row_id, queue, event_ids in inserted
    ]


def _publish_deferred(tenant_id: str, inserted: Callable[[], list], envelopes: dict[str, Envelope]) -> None:
    try:
        rows = _rows(tenant_id, inserted())
    except Exception as exc:  # stamped published but not sent: the relay re-sends them later
        logger.warning("could not read the outbox rows just committed, the relay will send them: %s", exc)
        return
    publish_after_commit(rows, envelopes)


def redrive(rows: Sequence[Outbox]) -> int:
    """Publish these outbox rows again now, whatever their state (operators re-driving stuck work).
    Consumers are idempotent, so a row that was in fact still queued is applied once. Returns rows sent."""
    owed = [OutboxRow.of(r) for r in rows]
    if not owed:
        return 0
    sent = _send(owed, _missing_envelopes(owed, {}))
    _mark_published(sent)
    return len(sent)


def _send(rows: Sequence[OutboxRow], envelopes: dict[str, Envelope]) -> list[int]:
    """Send each row as one message; returns the ids of rows the broker confirmed."""
    sent = []
    try:
        _send_each(rows, envelopes, sent)
    except Exception:
        reset_broker_pools()
        if not sent:
            raise
        logger.warning("published %d of %d outbox rows before the broker failed", len(sent), len(rows))
    return sent


def reset_broker_pools() -> None:
    """Pooled broker connections may be dead (the broker restarted): drop the pools, as Celery does
    after a fork, so the next publish opens fresh connections."""
    try:
        kombu_pools.reset()
    except Exception as exc:  # closing dead sockets may fail in any way; the pools are dropped anyway
        logger.debug("resetting broker pools: %s", exc)
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def _send_each(rows, envelopes, sent: list[int]) -> None:
    with celery_app.producer_or_acquire() as producer:
        for row in rows:
            events = [envelopes[i] for i in row.event_ids if i in envelopes]
            if len(events) != len(row.event_ids):
                logger.error("outbox row %s references events that are not stored; skipping it", row.id)
                continue
            lane = routing.lane_queue(row.queue, row.tenant_id)
            celery_app.send_task(
                message.task_name(row.queue),
                args=[message.encode(tenant_id=row.tenant_id, agent=row.queue, outbox_ids=[row.id], events=events)],
                # Celery would otherwise repr() the whole batch for monitoring.
                argsrepr=f"<batch of {len(events)} events for {row.tenant_id}>",
                kwargsrepr="{}",
                queue=lane,
                routing_key=lane,
                producer=producer,
                confirm_timeout=CONFIRM_TIMEOUT,
                retry=False,
            )
            sent.append(row.id)


def _missing_envelopes(rows: Sequence[OutboxRow], known: dict[str, Envelope]) -> dict[str, Envelope]:
    wanted: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        wanted[row.tenant_id].update(i for i in row.event_ids if i not in known)
    found = dict(known)
    for tenant_id, ids in wanted.items():
        if ids:
            found.update(load_envelopes(tenant_id, ids))
    return found


def _mark_published(ids: Sequence[int]) -> None:
    Outbox.objects.filter(id__in=ids).update(
        published_at=timezone.now(), publish_count=F("publish_count") + 1, last_error=""
    )


def publish_after_commit(rows: Sequence[OutboxRow], envelopes: dict[str, Envelope]) -> None:
    """The fast path (an on_commit callback) for rows `offer` stamped as sent. Never raises: rows it
    cannot publish get their stamp taken back, for the relay."""
    global _paused_until
    if not rows:
        return
    if time.monotonic() < _paused_until:
        _unstamp(rows)
        return
    tenant_id = rows[0].tenant_id
    sent: list[int] = []
    try:
        found = envelopes
        if any(i not in envelopes for row in rows for i in row.event_ids):
            with tenant_scope(tenant_id):
                found = _missing_envelopes(rows, envelopes)
        sent = _send(rows, found)
    except Exception as exc:
        from sentinai.kernel import dependencies

        _paused_until = time.monotonic() + FAST_PATH_PAUSE_SECONDS
        if isinstance(exc, dependencies.broker_errors()):
            dependencies.down("broker", exc, consequence="events wait in the outbox; the relay publishes them")
        else:
            logger.warning("fast-path publish failed, the relay will publish %d outbox rows: %s", len(rows), exc)
    if sent:
        from sentinai.kernel import dependencies

        dependencies.up("broker")
        metrics.PUBLISHED.labels("fast").inc(len(sent))
    if len(sent) < len(rows):
        done = set(sent)
        _unstamp([row for row in rows if row.id not in done])


def _unstamp(rows: Sequence[OutboxRow]) -> None:
    """Take back the fast path's stamp of rows it did not send: the relay sends them after the grace
    period. Should even that fail (the database is down too), the rows stay stamped and the relay
    re-sends them after OUTBOX_REDELIVER_SECONDS."""
    try:
        with tenant_scope(rows[0].tenant_id):
            Outbox.objects.filter(id__in=[row.id for row in rows], publish_count=1).update(
                published_at=None, publish_count=0
            )
    except Exception as exc:
        logger.warning("could not mark outbox rows %s unpublished: %s", [row.id for row in rows], exc)


# A published row not consumed after OUTBOX_REDELIVER_SECONDS is sent again, then after twice that,
# four times... up to this many doublings: the wait between re-sends is bounded.
REDELIVER_MAX_DOUBLINGS = 5


def _due(now) -> Q:
    """Rows owed a (re-)send now: never published and older than the grace period, or published
    `publish_count` times and not consumed for OUTBOX_REDELIVER_SECONDS * 2^(publish_count - 1)
    (capped). Whatever the depth of the queue: a batch waiting in a long backlog is sent twice
    (its consumer applies it once), but a batch the broker lost is never left waiting for the
    backlog to drain."""
    cfg = settings.SENTINAI
    due = Q(published_at__isnull=True, created_at__lt=now - timedelta(seconds=cfg["OUTBOX_GRACE_SECONDS"]))
    base = cfg["OUTBOX_REDELIVER_SECONDS"]
    for doublings in range(REDELIVER_MAX_DOUBLINGS):
        due |= Q(publish_count=doublings + 1, published_at__lt=now - timedelta(seconds=base * 2**doublings))
    due |= Q(
        publish_count__gt=REDELIVER_MAX_DOUBLINGS,
        published_at__lt=now - timedelta(seconds=base * 2**REDELIVER_MAX_DOUBLINGS),
    )
    # A row stamped published with a count of 0 (written by an older release) is due after the base.
    due |= Q(publish_count=0, published_at__lt=now - timedelta(seconds=base))
    return due


def _dead_letter_unloadable(rows: Sequence[OutboxRow], envelopes: dict[str, Envelope]) -> list[OutboxRow]:
    """Rows referencing events that cannot be loaded can never be sent: each becomes a dead letter
    (source "outbox", with the missing ids as its reason) and leaves the outbox. Returns the others."""
    from sentinai.models import DeadLetter

    sendable = []
    for row in rows:
        missing = [i for i in row.event_ids if i not in envelopes]
        if not missing:
            sendable.append(row)
            continue
        reason = (
            f"outbox row {row.id} for {row.queue}: {len(missing)} of its {len(row.event_ids)} events cannot be "
            f"loaded from the event store (not stored): {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        )
        DeadLetter.objects.update_or_create(
            source=DeadLetter.Source.OUTBOX,
            message_id=f"outbox:{row.id}",
            defaults={
                "tenant_id": row.tenant_id,
                "consumer": row.queue,
                "event_ids": list(row.event_ids),
                "error": reason,
                "status": DeadLetter.Status.OPEN,
            },
        )
        Outbox.objects.filter(id=row.id).delete()
        metrics.DEAD_LETTERS.labels(row.queue, "outbox").inc()
        logger.error("dead-lettered %s", reason)
    return sendable


def relay_all_tenants(limit: int = 500) -> int:
    """Republish outbox rows the fast path missed and rows not consumed in time (a broker lost them,
    or they wait in a backlog: consumers are idempotent), by the row's age and send count; dead-letter
    rows whose events cannot be loaded. Returns rows sent."""
    from sentinai.kernel import dependencies

    now = timezone.now()
    with all_tenants_scope():
        candidates = list(Outbox.objects.select_for_update(skip_locked=True).filter(_due(now)).order_by("id")[:limit])
        if not candidates:
            return 0
        rows = [OutboxRow.of(row) for row in candidates]
        envelopes = _missing_envelopes(rows, {})
        rows = _dead_letter_unloadable(rows, envelopes)
        if not rows:
            return 0
        try:
            sent = _send(rows, envelopes)
        except dependencies.broker_errors() as exc:
            dependencies.down(
                "broker", exc, consequence="the outbox keeps what is owed; the relay sends it once it is back"
            )
            Outbox.objects.filter(id__in=[r.id for r in rows]).update(last_error=str(exc)[:500])
            return 0
        dependencies.up("broker")
        _mark_published(sent)
        if sent:
            metrics.PUBLISHED.labels("relay").inc(len(sent))
            logger.info("relay published %d outbox rows", len(sent))
        return len(sent)


def forget_publications_all_tenants() -> int:
    """Mark every outbox row unpublished. For the in-process broker, whose messages die with the
    process: at start-up everything still in the outbox is owed again."""
    with all_tenants_scope():
        return Outbox.objects.filter(published_at__isnull=False).update(published_at=None)
