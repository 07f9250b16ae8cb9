"""Dead letters: recording what the broker dead-lettered, replaying and discarding."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Any

import orjson
from django.db.models import QuerySet

from sentinai.eventstore import outbox
from sentinai.models import DeadLetter, ParkedEvent, ProcessedEvent, delivery_key
from sentinai.tenancy.scope import all_tenants_scope, tenant_scope

logger = logging.getLogger(__name__)


class NotReplayable(ValueError):
    pass


def _batch_of(body: Any) -> dict | None:
    """The SentinAI batch inside a Celery message body ([args, kwargs, embed]), if it has one."""
    if isinstance(body, (bytes, str)):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
    if isinstance(body, list) and body and isinstance(body[0], list) and body[0]:
        body = body[0][0]
    if isinstance(body, dict) and isinstance(body.get("tenant_id"), str) and isinstance(body.get("events"), list):
        return body
    return None


def _text(body: Any) -> str:
    if isinstance(body, bytes):
        return body.decode("utf-8", errors="replace")
    if isinstance(body, str):
        return body
    return orjson.dumps(body, default=str).decode()


def record_broker_dead_letter(
    *, message_id: str | None, queue: str, body: Any, headers: dict, error: str = ""
) -> DeadLetter:
    """Record a message the broker dead-lettered (undecodable, rejected, or over its delivery limit).
    Idempotent per message id: at-least-once dead-lettering may deliver it twice."""
    batch = _batch_of(body)
    event_ids: list[str] = []
    tenant_id = None
    if batch is not None:
        tenant_id = batch["tenant_id"]
        event_ids = [str(e.get("event_id")) for e in batch["events"] if isinstance(e, dict) and e.get("event_id")]
    reason = headers.get("x-first-death-reason") or _death_reason(headers)
    with all_tenants_scope():
        letter, _ = DeadLetter.objects.update_or_create(
            source=DeadLetter.Source.BROKER,
            message_id=message_id or str(uuid.uuid4()),
            defaults={
                "tenant_id": tenant_id,
                "consumer": (batch or {}).get("agent") or queue,
                "event_ids": event_ids,
                "error": error or f"dead-lettered by the broker ({reason or 'unknown reason'})",
                "body": _text(body)[:1_000_000],
                "headers": orjson.loads(orjson.dumps(headers, default=str)),
                "status": DeadLetter.Status.OPEN,
            },
        )
    from sentinai.kernel import metrics

    metrics.DEAD_LETTERS.labels((batch or {}).get("agent") or queue or "unknown", "broker").inc()
    return letter


def _death_reason(headers: dict) -> str | None:
    deaths = headers.get("x-death") or []
    if deaths and isinstance(deaths[0], dict):
        return deaths[0].get("reason")
    return None


def replay(letters: Iterable[DeadLetter], *, actor: str = "") -> int:
    """Offer the events of each dead letter to its agent again. The agent runs them from scratch:
    a handler dead letter is un-marked as processed first. `actor` (who asked) is recorded on the
    dead letter. Returns the number replayed."""
    count = 0
    for letter in letters:
        if not letter.tenant_id or not letter.event_ids:
            raise NotReplayable(f"dead letter {letter.pk} holds no events to replay (undecodable message)")
        event_ids = list(letter.event_ids)
        with tenant_scope(letter.tenant_id):
            if letter.source == DeadLetter.Source.HANDLER:
                ProcessedEvent.objects.of(letter.consumer, event_ids).delete()
            outbox.offer(letter.tenant_id, {letter.consumer: event_ids})
            DeadLetter.objects.filter(pk=letter.pk).update(
                status=DeadLetter.Status.REPLAYED, replay_count=letter.replay_count + 1, replayed_by=actor
            )
        count += 1
        logger.info(
            "replayed dead letter %s (%s, %d events) for %s", letter.pk, letter.consumer, len(event_ids), actor or "?"
        )
    return count


def discard(letters: Iterable[DeadLetter]) -> int:
    """Give up on dead letters for good. A handler dead letter's event counts as handled, so the
    events of the same exception that wait behind it go ahead."""
    count = 0
    for letter in letters:
        scope = tenant_scope(letter.tenant_id) if letter.tenant_id else all_tenants_scope()
        with scope:
            if letter.source == DeadLetter.Source.HANDLER and letter.event_id:
                key = delivery_key(letter.consumer, str(letter.event_id))
                ProcessedEvent.objects.get_or_create(
                    pk=key,
                    defaults={"consumer": letter.consumer, "event_id": letter.event_id, "tenant_id": letter.tenant_id},
                )
                waiting = list(ParkedEvent.objects.filter(waiting_key=key).values_list("id", "event_id"))
                if waiting:
                    ParkedEvent.objects.filter(id__in=[w[0] for w in waiting]).delete()
                    outbox.offer(letter.tenant_id, {letter.consumer: [str(w[1]) for w in waiting]})
            DeadLetter.objects.filter(pk=letter.pk).update(status=DeadLetter.Status.DISCARDED)
        count += 1
    return count


def select_all_tenants(
    *,
    ids: Iterable[int] | None = None,
    agent: str | None = None,
    tenant: str | None = None,
    status: str | None = "open",
) -> list[DeadLetter]:
    """Dead letters matching the filters, across tenants (operators, the replay command)."""
    with all_tenants_scope():
        qs: QuerySet[DeadLetter] = DeadLetter.objects.all().order_by("id")
        if ids:
            qs = qs.filter(pk__in=list(ids))
        if agent:
            qs = qs.filter(consumer=agent)
        if tenant:
            qs = qs.filter(tenant_id=tenant)
        if status:
            qs = qs.filter(status=status)
        return list(qs)
