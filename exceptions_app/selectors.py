"""Reads of the exceptions API (database projections only, never an agent), and what agents load."""

from __future__ import annotations

import importlib
from datetime import datetime
from functools import cache
from typing import Any

import orjson
from django.conf import settings
from django.db.models.fields.json import KT

from exceptions_app.models import ExceptionRecord
from sentinai.api.renderers import json_object_sql
from sentinai.kernel.bulk import keyset_before
from sentinai.models import ExceptionEvent
from sentinai.packs.conditions import exception_view

FIELDS = (
    "id",
    "tenant_id",
    "source_system",
    "source_ref",
    "exception_type",
    "severity",
    "priority",
    "status",
    "manual",
    "payload",
    "normalized",
    "invalid_reasons",
    "occurred_at",
    "sla_due_at",
    "closed_at",
    "created_at",
    "updated_at",
)
EVENT_FIELDS = ("event_id", "event_type", "sequence", "causation_id", "producer", "recorded_at", "payload")


def _shape(row: dict[str, Any]) -> dict[str, Any]:
    shaped = dict(row)
    shaped["exception_id"] = shaped.pop("id")
    return shaped


def _filtered(tenant_id: str, filters: dict[str, Any], after: dict[str, Any] | None):
    qs = ExceptionRecord.objects.filter(tenant_id=tenant_id)
    for name in ("status", "severity", "exception_type"):
        if filters.get(name):
            qs = qs.filter(**{name: filters[name]})
    if filters.get("created_after"):
        qs = qs.filter(created_at__gt=filters["created_after"])
    if filters.get("created_before"):
        qs = qs.filter(created_at__lt=filters["created_before"])
    if after is not None:
        qs = qs.filter(keyset_before("created_at", "id", after["c"], after["i"]))
    return qs


def exception_page(
    *, tenant_id: str, filters: dict[str, Any], after: dict[str, Any] | None, limit: int
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Newest first, by keyset (created_at, id): constant cost at any depth. Returns the page and the
    position after its last row (None on the last page)."""
    rows = list(_filtered(tenant_id, filters, after).order_by("-created_at", "-id").values(*FIELDS)[: limit + 1])
    position = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        position = {"c": last["created_at"].isoformat(), "i": str(last["id"])}
    return [_shape(r) for r in rows], position


# The list page's rows as the API renders them, built by PostgreSQL: Python then handles one text
# and the keyset's two columns per row, not 17 columns to load (five timestamps parsed, three JSON
# documents decoded) and render again (docs/performance.md, "The list page rendered by PostgreSQL").
_TIMESTAMPS = ("occurred_at", "sla_due_at", "closed_at", "created_at", "updated_at")


def _exception_json(alias: str) -> str:
    return json_object_sql(alias, FIELDS, timestamps=_TIMESTAMPS, renames={"id": "exception_id"})


# The filters a list page can have, in the order their conditions are written; each set of them
# present is one statement text, built once (no ORM query build per request).
_FILTER_CONDITIONS = (
    ("status", "e.status = %s"),
    ("severity", "e.severity = %s"),
    ("exception_type", "e.exception_type = %s"),
    ("created_after", "e.created_at > %s"),
    ("created_before", "e.created_at < %s"),
)


@cache
def _page_sql(present: tuple[str, ...], keyset: bool) -> str:
    conditions = ["e.tenant_id = %s", *(sql for name, sql in _FILTER_CONDITIONS if name in present)]
    if keyset:
        # A row comparison, as keyset_before writes it: the (tenant_id, <filter>, created_at, id)
        # indexes seek straight to the cursor.
        conditions.append("(e.created_at, e.id) < (%s, %s)")
    return (
        f"SELECT ({_exception_json('e')})::text FROM exception e WHERE {' AND '.join(conditions)} "
        "ORDER BY e.created_at DESC, e.id DESC LIMIT %s"
    )


def exception_page_statement(
    *, tenant_id: str, filters: dict[str, Any], after: dict[str, Any] | None, limit: int
) -> tuple[str, list[Any]]:
    """The PostgreSQL statement of a list page (one more row than `limit`: is there a next page)."""
    present = tuple(name for name, _ in _FILTER_CONDITIONS if filters.get(name))
    params: list[Any] = [tenant_id, *(filters[name] for name in present)]
    if after is not None:
        params += [after["c"], after["i"]]
    params.append(limit + 1)
    return _page_sql(present, after is not None), params


def exception_page_json(
    *, tenant_id: str, filters: dict[str, Any], after: dict[str, Any] | None, limit: int
) -> tuple[Any, dict[str, Any] | None]:
    """`exception_page` with its rows already rendered: on PostgreSQL an orjson.Fragment of the JSON
    array (the same document the API renders from `exception_page`'s rows), elsewhere those rows.

    One fixed-text statement per set of filters; only the documents come back, and the next page's
    position is read from the last one (its `created_at` is the column to the microsecond, in the
    API's format, which `parse_position` reads)."""
    from django.db import connection

    from sentinai.kernel import bulk

    if connection.vendor != "postgresql":
        return exception_page(tenant_id=tenant_id, filters=filters, after=after, limit=limit)
    with bulk.server_cursor() as cursor:
        cursor.execute(*exception_page_statement(tenant_id=tenant_id, filters=filters, after=after, limit=limit))
        documents = [row[0] for row in cursor.fetchall()]
    position = None
    if len(documents) > limit:
        documents = documents[:limit]
        last = orjson.loads(documents[-1])
        position = {"c": last["created_at"], "i": last["exception_id"]}
    return orjson.Fragment("[" + ",".join(documents) + "]"), position


def exception_get(*, tenant_id: str, exception_id: str) -> dict[str, Any] | None:
    row = ExceptionRecord.objects.filter(tenant_id=tenant_id, id=exception_id).values(*FIELDS).first()
    return _shape(row) if row else None


def exception_events(*, exception_id: str, types: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The exception's event chain in sequence order."""
    qs = ExceptionEvent.objects.filter(exception_id=exception_id)
    if types:
        qs = qs.filter(event_type__in=types)
    return list(qs.order_by("sequence").values(*EVENT_FIELDS))


def parse_position(position: dict[str, Any]) -> dict[str, Any]:
    """Validate a decoded cursor position (signed, but checked anyway)."""
    return {"c": datetime.fromisoformat(position["c"]), "i": str(position["i"])}


def exception_trace(*, tenant_id: str, exception_id: str) -> dict[str, Any]:
    """The exception's event chain as a trace: each event with the event that caused it and how long
    after its cause it was recorded (queueing + the producing agent's work), and per agent totals.
    A human action's span names its actor (the API key's name); an agent's has none."""
    events = list(
        ExceptionEvent.objects.filter(tenant_id=tenant_id, exception_id=exception_id)
        .order_by("sequence")
        .values(
            "event_id", "event_type", "sequence", "causation_id", "producer", "recorded_at", actor=KT("payload__actor")
        )
    )
    by_id = {e["event_id"]: e for e in events}
    agents: dict[str, dict[str, Any]] = {}
    spans = []
    for event in events:
        cause = by_id.get(event["causation_id"]) if event["causation_id"] else None
        after_ms = round((event["recorded_at"] - cause["recorded_at"]).total_seconds() * 1000, 3) if cause else None
        spans.append(
            {
                **event,
                "caused_by": {
                    "event_id": cause["event_id"],
                    "event_type": cause["event_type"],
                    "sequence": cause["sequence"],
                }
                if cause
                else None,
                "after_cause_ms": after_ms,
            }
        )
        if after_ms is not None:
            totals = agents.setdefault(event["producer"], {"events": 0, "total_ms": 0.0, "max_ms": 0.0})
            totals["events"] += 1
            totals["total_ms"] = round(totals["total_ms"] + after_ms, 3)
            totals["max_ms"] = max(totals["max_ms"], after_ms)
    duration = (
        round((events[-1]["recorded_at"] - events[0]["recorded_at"]).total_seconds() * 1000, 3) if events else 0.0
    )
    return {"exception_id": exception_id, "duration_ms": duration, "agents": agents, "spans": spans}


_DETAIL_SQL = (
    "SELECT ("
    + _exception_json("e")[:-1]
    + ", 'events', COALESCE((SELECT json_agg("
    + json_object_sql("v", EVENT_FIELDS, timestamps=("recorded_at",))
    + " ORDER BY v.sequence) FROM exception_event v WHERE v.exception_id = e.id), '[]'::json))"
    + ")::text FROM exception e WHERE e.tenant_id = %s AND e.id = %s"
)


def exception_detail_json(*, tenant_id: str, exception_id: str) -> bytes | None:
    """The exception with its event chain, as a JSON document, or None. On PostgreSQL the database
    builds the document (the hot path of the single-exception read: no ORM, no serialiser), in one
    call of sentinai_exception_document (exceptions_app migration 0004), which also sets and restores
    the tenant scope: no transaction of its own is needed."""
    from django.db import connection

    from sentinai.kernel import bulk

    if connection.vendor == "postgresql":
        with bulk.server_cursor() as cursor:
            cursor.execute("SELECT sentinai_exception_document(%s, %s::uuid)", [tenant_id, exception_id])
            document = cursor.fetchone()[0]
        return document.encode() if document is not None else None
    record = exception_get(tenant_id=tenant_id, exception_id=exception_id)
    if record is None:
        return None
    record["events"] = exception_events(exception_id=exception_id)
    return orjson.dumps(record)


def open_exception_counts_all_tenants() -> dict[str, int]:
    """Open (not yet resolved or escalated) exceptions per tenant, from the partial index of open
    exceptions (exception_open): what admission control's in-flight caps are reconciled with."""
    from django.db.models import Count

    from sentinai.tenancy.scope import all_tenants_scope

    with all_tenants_scope():
        return dict(
            ExceptionRecord.objects.filter(closed_at__isnull=True)
            .values_list("tenant_id")
            .annotate(n=Count("id"))
            .values_list("tenant_id", "n")
        )


# --- loaders of the agents (plain data, for decisions) ------------------------------------------


def exception_views(*, exception_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The condition/template view of each exception (what a tool's URL and body are rendered from)."""
    return {
        str(r["id"]): exception_view(str(r["id"]), r)
        for r in ExceptionRecord.objects.filter(id__in=exception_ids).values(
            "id", "exception_type", "severity", "status", "normalized", "payload"
        )
    }


@cache
def _classifier(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)()


def triage_settings() -> dict[str, Any]:
    """The configured classifier (SENTINAI["CLASSIFIER"], "module:Class") and the fraction of the SLA
    window after which an exception is imminent."""
    return {
        "classifier": _classifier(settings.SENTINAI.get("CLASSIFIER", "agents.triage.logic:RulesClassifier")),
        "imminent_fraction": settings.SENTINAI["SLA_IMMINENT_FRACTION"],
    }


# The two loaders below read playbooks_app's tables. playbooks_app imports this module, so its models
# are imported when called, not when this module loads.
