"""Write services for exceptions: ingestion (single and batch share one set-based path)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import DatabaseError
from django.db.models import Q

from exceptions_app.models import ExceptionRecord
from sentinai.eventstore import store
from sentinai.kernel import bulk, ids
from sentinai.packs import pii
from sentinai.tenancy import admission
from sentinai.tenancy.scope import tenant_scope


@dataclass(frozen=True, slots=True)
class NewException:
    """One exception to ingest; `payload` must already be redacted."""

    source_system: str
    payload: dict[str, Any]
    source_ref: str | None = None
    exception_type: str | None = None
    occurred_at: datetime | None = None
    idempotency_key: str | None = None
    severity: str | None = None
    manual: bool = False
    event_type: str = "ExceptionIngested"
    event_payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Ingested:
    exception_id: str
    event_id: str | None
    deduplicated: bool


# The Kafka ingest and the API clean a client's Idempotency-Key the same way.
idempotency_key_clean = ids.idempotency_key


def exception_from_report(
    data: dict[str, Any], rules: pii.Rules, *, idempotency_key: str | None = None
) -> NewException:
    """An exception reported by a source system (IngestSerializer's validated data), redacted before
    anything is stored, published or logged."""
    payload = pii.redact(data["payload"], rules).value
    occurred_at = data.get("occurred_at")
    return NewException(
        source_system=data["source_system"],
        source_ref=data.get("source_ref"),
        exception_type=data.get("exception_type"),
        occurred_at=occurred_at,
        idempotency_key=idempotency_key,
        payload=payload,
        event_payload={
            "source_system": data["source_system"],
            "source_ref": data.get("source_ref"),
            "exception_type": data.get("exception_type"),
            "occurred_at": occurred_at.isoformat() if occurred_at else None,
            "payload": payload,
        },
    )


def exceptions_ingest_admitted(*, tenant_id: str, items: Sequence[NewException]) -> list[Ingested]:
    """Ingest items admission control admitted, in one tenant-scoped transaction (the API and the
    Kafka ingest both come here). The in-flight room taken for duplicates is handed back, and for
    every item when nothing was stored: LookupError (a concurrent conflicting request rolled back;
    retry) or the DatabaseError is raised after that."""
    try:
        with tenant_scope(tenant_id):
            results = exceptions_ingest(tenant_id=tenant_id, items=items)
    except (LookupError, DatabaseError):
        admission.release(tenant_id, len(items))
        raise
    admission.release(tenant_id, sum(1 for r in results if r.deduplicated))
    return results


def _natural_key(item: NewException) -> tuple:
    if item.idempotency_key:
        return ("key", item.idempotency_key)
    if item.source_ref:
        return ("ref", item.source_system, item.source_ref)
    return ("new", id(item))


def exceptions_ingest(*, tenant_id: str, items: Sequence[NewException]) -> list[Ingested]:
    """Create exceptions with their first event, inside the caller's (tenant-scoped) transaction.

    An item whose (source_system, source_ref) or idempotency key already exists - stored earlier, by a
    concurrent request (the unique indexes serialise them), or earlier in the same batch - is not
    created again: it answers with the existing exception and `deduplicated=True`.
    """
    if not items:
        return []
    candidates: dict[tuple, str] = {}
    rows = []
    for item in items:
        key = _natural_key(item)
        if key in candidates:
            continue
        candidates[key] = ids.new_id()
        rows.append(
            {
                "id": candidates[key],
                "tenant": tenant_id,
                "source_system": item.source_system,
                "source_ref": item.source_ref,
                "idempotency_key": item.idempotency_key,
                "exception_type": item.exception_type,
                "payload": item.payload,
                "occurred_at": item.occurred_at,
                "severity": item.severity,
                "manual": item.manual,
            }
        )
    created = {ids.parse(row[0]) for row in bulk.insert(ExceptionRecord, rows, conflict=(), returning=("id",))}
    existing = _existing(tenant_id, [item for item in items if candidates[_natural_key(item)] not in created])

    new_events = []
    by_exception: dict[str, NewException] = {}
    for item in items:
        exception_id = candidates[_natural_key(item)]
        if exception_id in created and exception_id not in by_exception:
            by_exception[exception_id] = item
            new_events.append(store.NewEvent(exception_id, item.event_type, item.event_payload))
    started = store.append(tenant_id=tenant_id, events=new_events, producer="api", new_streams=True)
    envelopes = {e.exception_id: e.event_id for e in started}

    results = []
    first_seen: set[str] = set()
    for item in items:
        exception_id = candidates[_natural_key(item)]
        if exception_id in created and exception_id not in first_seen:
            first_seen.add(exception_id)
            results.append(Ingested(exception_id, envelopes[exception_id], deduplicated=False))
        elif exception_id in created:
            results.append(Ingested(exception_id, None, deduplicated=True))
        else:
            results.append(Ingested(existing[_natural_key(item)], None, deduplicated=True))
    return results


def _existing(tenant_id: str, items: list[NewException]) -> dict[tuple, str]:
    """Ids of stored exceptions for items that conflicted, by their natural key. An item conflicts on
    its idempotency key or on its (source_system, source_ref); either identifies the stored one."""
    if not items:
        return {}
    keys = Q()
    for item in items:
        if item.idempotency_key:
            keys |= Q(idempotency_key=item.idempotency_key)
        if item.source_ref:
            keys |= Q(source_system=item.source_system, source_ref=item.source_ref)
    by_key, by_ref = {}, {}
    for row in ExceptionRecord.objects.filter(keys, tenant_id=tenant_id).values(
        "id", "idempotency_key", "source_system", "source_ref"
    ):
        if row["idempotency_key"]:
            by_key[row["idempotency_key"]] = str(row["id"])
        if row["source_ref"]:
            by_ref[(row["source_system"], row["source_ref"])] = str(row["id"])
    found: dict[tuple, str] = {}
    for item in items:
        match = by_key.get(item.idempotency_key) or by_ref.get((item.source_system, item.source_ref))
        if match is None:
            # The conflicting row was created by a transaction that has since rolled back.
            raise LookupError("a duplicate conflicted but is no longer stored; retry the request")
        found[_natural_key(item)] = match
    return found


# --- commands on an existing exception ------------------------------------------------------


class ExceptionNotFound(LookupError):
    pass


class NothingAwaitsApproval(Exception):
    pass


def _with_actor(payload: dict, actor: str | None) -> dict:
    """A human action's payload names who took it: the API key's name."""
    return payload if actor is None else {**payload, "actor": actor}


def _append_to(
    tenant_id: str, exception_id: str, event: store.NewEvent, fields: tuple[str, ...] = ()
) -> store.Envelope:
    streams = store.lock_streams(tenant_id, [exception_id], fields)
    if exception_id not in streams:
        raise ExceptionNotFound(exception_id)
    (envelope,) = store.append(tenant_id=tenant_id, events=[event], producer="api", streams=streams)
    return envelope


def exception_request_recalculation(
    *, tenant_id: str, exception_id: str, requested_by: str, reason: str = "", actor: str | None = None
) -> store.Envelope:
    """Ask policy to match the exception's playbook again (PlaybookRecalculationRequested)."""
    return _append_to(
        tenant_id,
        exception_id,
        store.NewEvent(
            exception_id,
            "PlaybookRecalculationRequested",
            _with_actor({"requested_by": requested_by, "reason": reason}, actor),
        ),
    )


def exception_decide_approval(
    *, tenant_id: str, exception_id: str, decision: str, comment: str, decided_by: str, actor: str | None = None
) -> store.Envelope:
    """Record a human decision on the step awaiting approval. Raises NothingAwaitsApproval when no run
    of the exception waits for one, or a decision for that step is already recorded (a concurrent or
    repeated request), checked under the exception's stream lock."""
    from playbooks_app.models import PlaybookRun, RunStatus
    from sentinai.models import ExceptionEvent

    streams = store.lock_streams(tenant_id, [exception_id])
    if exception_id not in streams:
        raise ExceptionNotFound(exception_id)
    run = (
        PlaybookRun.objects.filter(tenant_id=tenant_id, exception_id=exception_id, status=RunStatus.AWAITING_APPROVAL)
        .order_by("-started_at")
        .values("id", "current_position")
        .first()
    )
    if run is None:
        raise NothingAwaitsApproval(exception_id)
    run_id, position = str(run["id"]), run["current_position"]
    if ExceptionEvent.objects.filter(
        exception_id=exception_id, event_type="ApprovalDecided", payload__run_id=run_id, payload__position=position
    ).exists():
        raise NothingAwaitsApproval(exception_id)
    event = store.NewEvent(
        exception_id,
        "ApprovalDecided",
        _with_actor(
            {
                "decision": decision,
                "comment": comment,
                "decided_by": decided_by,
                "run_id": run_id,
                "position": position,
            },
            actor,
        ),
    )
    (envelope,) = store.append(tenant_id=tenant_id, events=[event], producer="api", streams=streams)
    return envelope


def exception_submit_feedback(
    *,
    tenant_id: str,
    exception_id: str,
    rating: int | None,
    outcome: str,
    comment: str,
    submitted_by: str,
    actor: str | None = None,
) -> store.Envelope:
    return _append_to(
        tenant_id,
        exception_id,
        store.NewEvent(
            exception_id,
            "FeedbackSubmitted",
            _with_actor(
                {"rating": rating, "outcome": outcome, "comment": comment, "submitted_by": submitted_by}, actor
            ),
        ),
    )
