"""Reads of playbooks and playbook runs (projections only)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection
from functools import cache
from typing import Any

import orjson
from django.db.models import Max

from exceptions_app.selectors import exception_events
from playbooks_app.domain import (
    PlaybookBatchState,
    RunState,
    RunStatus,
    StepAction,
    StepDefinition,
    StepState,
    StepStatus,
)
from playbooks_app.models import Playbook, PlaybookRun, PlaybookRunStep, PlaybookStep
from sentinai.api.renderers import api_timestamp_sql, json_object_sql
from sentinai.kernel import bulk
from sentinai.kernel.cache import TTLCache
from sentinai.models import Tenant
from tools_app.models import Tool

# Definitions the agents read every batch, per process. A playbook row is one immutable version (its
# steps never change), so its steps are cached by (tenant, playbook id); what depends on which
# version is bound is keyed by _bound_version.
_definitions: TTLCache[Any] = TTLCache(ttl=600.0, maxsize=20_000)

PLAYBOOK_EVENTS = (
    "PolicyEvaluationCompleted",
    "PlaybookMatched",
    "PlaybookRecalculationRequested",
    "StepExecutionRequested",
    "StepExecutionCompleted",
    "ApprovalDecided",
    "ToolExecutionRequested",
    "ToolExecutionCompleted",
    "PlaybookCompleted",
    "EscalationRequested",
)


def playbook_get(*, tenant_id: str | None, playbook_id: str) -> dict[str, Any] | None:
    """The playbook version, if it is `tenant_id`'s (None: any tenant's, for operators)."""
    qs = Playbook.objects.filter(id=playbook_id)
    if tenant_id is not None:
        qs = qs.filter(tenant_id=tenant_id)
    playbook = qs.values(
        "id",
        "tenant_id",
        "pack",
        "pack_version",
        "name",
        "version",
        "description",
        "match",
        "priority",
        "is_active",
        "created_at",
    ).first()
    if playbook is None:
        return None
    playbook["steps"] = list(
        PlaybookStep.objects.filter(playbook_id=playbook_id)
        .order_by("position")
        .values("position", "name", "action", "tool", "params")
    )
    return playbook


def exception_playbook_view(*, tenant_id: str, exception_id: str) -> dict[str, Any]:
    """The exception's current (latest) playbook run: the playbook version it runs, its status, its step
    states, and the events of the exception that concern playbooks."""
    run = (
        PlaybookRun.objects.filter(tenant_id=tenant_id, exception_id=exception_id)
        .order_by("-started_at")
        .values("id", "playbook_id", "status", "current_position", "started_at", "finished_at")
        .first()
    )
    events = exception_events(exception_id=exception_id, types=PLAYBOOK_EVENTS)
    if run is None:
        return {"run_id": None, "playbook": None, "status": "none", "steps": [], "events": events}
    playbook = Playbook.objects.filter(id=run["playbook_id"]).values("id", "name", "version").first()
    steps = list(
        PlaybookRunStep.objects.filter(run_id=run["id"])
        .order_by("position")
        .values("position", "name", "action", "status", "tool_execution_id", "output", "started_at", "finished_at")
    )
    return {
        "run_id": run["id"],
        "playbook": playbook,
        "status": run["status"],
        "current_position": run["current_position"],
        "started_at": run["started_at"],
        "finished_at": run["finished_at"],
        "steps": steps,
        "events": events,
    }


@cache
def playbook_view_sql() -> str:
    """The statement of `exception_playbook_view_json` (bench/queries.py explains it)."""
    from exceptions_app.selectors import EVENT_FIELDS

    step = json_object_sql(
        "s",
        ("position", "name", "action", "status", "tool_execution_id", "output", "started_at", "finished_at"),
        timestamps=("started_at", "finished_at"),
    )
    started, finished = api_timestamp_sql('r."started_at"'), api_timestamp_sql('r."finished_at"')
    run = (
        "json_build_object('run_id', r.\"id\", "
        "'playbook', (SELECT json_build_object('id', p.\"id\", 'name', p.\"name\", 'version', p.\"version\") "
        'FROM playbook p WHERE p."id" = r."playbook_id"), '
        "'status', r.\"status\", 'current_position', r.\"current_position\", "
        f"'started_at', {started}, 'finished_at', {finished}, "
        f"'steps', COALESCE((SELECT json_agg({step} ORDER BY s.\"position\") FROM playbook_run_step s "
        'WHERE s."run_id" = r."id"), \'[]\'::json))::text'
    )
    event = json_object_sql("v", EVENT_FIELDS, timestamps=("recorded_at",))
    return (
        "SELECT EXISTS (SELECT 1 FROM exception e WHERE e.tenant_id = %(tenant)s AND e.id = %(exception)s), "
        f"(SELECT {run} FROM playbook_run r WHERE r.tenant_id = %(tenant)s AND r.exception_id = %(exception)s "
        "ORDER BY r.started_at DESC LIMIT 1), "
        f"(SELECT COALESCE(json_agg({event} ORDER BY v.sequence), '[]'::json)::text FROM exception_event v "
        "WHERE v.exception_id = %(exception)s AND v.event_type = ANY(%(types)s))"
    )


def exception_playbook_view_json(*, tenant_id: str, exception_id: str) -> Any:
    """`exception_playbook_view` as the API renders it, or None when the tenant has no such exception.
    On PostgreSQL one statement builds the document (the run with its playbook and steps, and the
    events), in the caller's tenant scope: bytes. Elsewhere the view's dict."""
    from django.db import connection

    if connection.vendor != "postgresql":
        from exceptions_app.models import ExceptionRecord

        if not ExceptionRecord.objects.filter(tenant_id=tenant_id, id=exception_id).exists():
            return None
        return exception_playbook_view(tenant_id=tenant_id, exception_id=exception_id)
    ((exists, run, events),) = bulk.select(
        playbook_view_sql(), {"tenant": tenant_id, "exception": exception_id, "types": list(PLAYBOOK_EVENTS)}
    )
    if not exists:
        return None
    if run is None:
        return b'{"run_id":null,"playbook":null,"status":"none","steps":[],"events":' + events.encode() + b"}"
    return run[:-1].encode() + b',"events":' + events.encode() + b"}"


def playbook_batch_state(
    *, tenant: Tenant, exception_ids: Collection[str], playbook_ids: Collection[str]
) -> PlaybookBatchState:
    """What the playbook agent decides a batch on: the current run of each of `exception_ids` with its
    steps, the steps and versions of those runs' playbooks and of `playbook_ids` (the playbooks about
    to start), and the tenant's tools. Two queries per batch (runs, their steps); definitions come
    from the per-process cache."""
    tenant_id = tenant.id
    runs: dict[str, dict[str, Any]] = {}
    for row in _batch_runs(tenant_id, list(exception_ids)):
        # Ordered newest first per exception: the first row seen is the current run.
        runs.setdefault(str(row["exception_id"]), row)
    wanted = {str(r["playbook_id"]) for r in runs.values()} | set(playbook_ids)
    definitions, versions = playbook_definitions(tenant_id=tenant_id, playbook_ids=wanted)
    tool_ids = _definitions.get_or_load(("tool_ids", _bound_version(tenant)), lambda: _tool_ids(tenant_id))
    progress: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    if runs:
        for row in _batch_steps(tenant_id, [r["id"] for r in runs.values()]):
            progress[str(row["run_id"])][row["position"]] = row
    return PlaybookBatchState(
        runs={
            exception_id: _run_state(row, definitions[str(row["playbook_id"])], progress[str(row["id"])], versions)
            for exception_id, row in runs.items()
        },
        definitions=definitions,
        versions=versions,
        tool_ids=tool_ids,
    )


_RUN_COLUMNS = (
    "id",
    "exception_id",
    "playbook_id",
    "status",
    "current_position",
    "policy",
    "started_at",
    "finished_at",
)
_STEP_COLUMNS = ("run_id", "position", "status", "tool_execution_id", "output", "started_at", "finished_at")


def _batch_runs(tenant_id: str, exception_ids: list[str]) -> list[dict[str, Any]]:
    """The runs (not superseded) of these exceptions, newest first per exception. On PostgreSQL one
    statement of fixed text, prepared by the driver after a few batches: building the ORM query cost
    more than running it, at every batch of the busiest agent."""
    if not bulk.is_postgres():
        return list(
            PlaybookRun.objects.filter(tenant_id=tenant_id, exception_id__in=exception_ids)
            .exclude(status=RunStatus.SUPERSEDED)
            .order_by("exception_id", "-started_at")
            .values(*_RUN_COLUMNS)
        )
    return _select(
        f"SELECT {', '.join(_RUN_COLUMNS)} FROM playbook_run WHERE tenant_id = %s AND exception_id {bulk.ANY_UUIDS} "
        "AND status <> %s ORDER BY exception_id, started_at DESC",
        [tenant_id, bulk.uuid_list(exception_ids), RunStatus.SUPERSEDED.value],
        _RUN_COLUMNS,
    )


def _batch_steps(tenant_id: str, run_ids: list[str]) -> list[dict[str, Any]]:
    """The steps recorded for these runs (as _batch_runs, one prepared statement on PostgreSQL)."""
    if not bulk.is_postgres():
        return list(PlaybookRunStep.objects.filter(tenant_id=tenant_id, run_id__in=run_ids).values(*_STEP_COLUMNS))
    return _select(
        f"SELECT {', '.join(_STEP_COLUMNS)} FROM playbook_run_step WHERE tenant_id = %s AND run_id {bulk.ANY_UUIDS}",
        [tenant_id, bulk.uuid_list(run_ids)],
        _STEP_COLUMNS,
    )


_JSON_COLUMNS = frozenset({"policy", "output"})


def _select(sql: str, params: list[Any], columns: tuple[str, ...]) -> list[dict[str, Any]]:
    """bulk.select's rows as dicts, JSON columns decoded (Django's connection loads jsonb as text)."""
    rows = [dict(zip(columns, row, strict=True)) for row in bulk.select(sql, params)]
    for row in rows:
        for name in _JSON_COLUMNS.intersection(row):
            if isinstance(row[name], (str, bytes)):
                row[name] = orjson.loads(row[name])
    return rows


def playbook_definitions(
    *, tenant_id: str, playbook_ids: Collection[str]
) -> tuple[dict[str, dict[int, StepDefinition]], dict[str, int]]:
    """The steps (by position) and version of each of the tenant's playbooks in `playbook_ids`: read
    once per process, as playbook versions never change."""
    missing = [i for i in playbook_ids if _cached(("playbook", tenant_id, i)) is None]
    if missing:
        steps: dict[str, dict[int, StepDefinition]] = defaultdict(dict)
        for row in PlaybookStep.objects.filter(tenant_id=tenant_id, playbook_id__in=missing).values(
            "playbook_id", "position", "name", "action", "tool", "params", "condition"
        ):
            steps[str(row["playbook_id"])][row["position"]] = StepDefinition(
                position=row["position"],
                name=row["name"],
                action=StepAction(row["action"]),
                tool=row["tool"],
                params=row["params"] or {},
                condition=row["condition"] or {},
            )
        for playbook_id, version in Playbook.objects.filter(tenant_id=tenant_id, id__in=missing).values_list(
            "id", "version"
        ):
            key = ("playbook", tenant_id, str(playbook_id))
            _definitions.get_or_load(key, lambda p=str(playbook_id), v=version: (dict(steps[p]), v))
    definitions: dict[str, dict[int, StepDefinition]] = defaultdict(dict)
    versions: dict[str, int] = {}
    for playbook_id in playbook_ids:
        cached = _cached(("playbook", tenant_id, playbook_id))
        if cached is not None:
            definitions[playbook_id], versions[playbook_id] = cached
    return definitions, versions


def _cached(key: tuple) -> Any:
    return _definitions.get_or_load(key, lambda: None, keep_none=False)


def _tool_ids(tenant_id: str) -> dict[tuple[str, int], str]:
    return {
        (name, version): str(tool_id)
        for tool_id, name, version in Tool.objects.filter(tenant_id=tenant_id).values_list("id", "name", "version")
    }


def _run_state(
    row: dict[str, Any],
    definitions: dict[int, StepDefinition],
    progress: dict[int, dict[str, Any]],
    versions: dict[str, int],
) -> RunState:
    playbook_id = str(row["playbook_id"])
    steps = {}
    for position, definition in definitions.items():
        step = progress.get(position)
        if step is None:
            steps[position] = StepState(definition)
            continue
        steps[position] = StepState(
            definition,
            status=StepStatus(step["status"]),
            tool_execution_id=str(step["tool_execution_id"]) if step["tool_execution_id"] else None,
            output=step["output"] or {},
            started_at=step["started_at"],
            finished_at=step["finished_at"],
        )
    return RunState(
        id=str(row["id"]),
        exception_id=str(row["exception_id"]),
        playbook_id=playbook_id,
        version=versions.get(playbook_id),
        status=RunStatus(row["status"]),
        current_position=row["current_position"],
        policy=row["policy"] or {},
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        steps=steps,
    )


def active_playbooks(*, tenant: Tenant) -> list[dict[str, Any]]:
    """The tenant's active playbooks in matching order (priority, then name), each with the tools its
    tool and notify steps use; per process, for the bound pack version (_bound_version)."""
    return _definitions.get_or_load(("active", _bound_version(tenant)), lambda: _active_playbooks(tenant.id))


def _bound_version(tenant: Tenant) -> tuple:
    """The version check of the definitions cache, one index lookup (playbook_tenant_active): which
    pack version is bound to the tenant now (binding activates a version's playbook and tool rows in
    one transaction) and its row's last change (overrides rebind it in place)."""
    if bulk.is_postgres():  # the ORM's aggregate took longer to build than the lookup to run
        bound = bulk.select("SELECT max(version) FROM playbook WHERE tenant_id = %s AND is_active", [tenant.id])[0][0]
    else:
        bound = Playbook.objects.filter(tenant_id=tenant.id, is_active=True).aggregate(v=Max("version"))["v"]
    return (tenant.id, bound, tenant.updated_at)


def _active_playbooks(tenant_id: str) -> list[dict[str, Any]]:
    playbooks = list(
        Playbook.objects.filter(tenant_id=tenant_id, is_active=True)
        .order_by("-priority", "name")
        .values("id", "name", "version", "match")
    )
    tools: dict[Any, set[str]] = {p["id"]: set() for p in playbooks}
    for playbook_id, tool in PlaybookStep.objects.filter(
        playbook_id__in=list(tools), action__in=("tool", "notify")
    ).values_list("playbook_id", "tool"):
        tools[playbook_id].add(tool)
    return [{**p, "id": str(p["id"]), "tools": tools[p["id"]]} for p in playbooks]


def succeeded_step_counts(*, tenant_id: str, exception_ids: list[str]) -> Counter[str]:
    """How many playbook steps succeeded for each exception (over all its runs). Two index lookups -
    the runs by the tenant-led playbook_run_exception index, then their steps by run - rather than a
    join: for the join the planner hashes a sequential scan of every step of every run."""
    if bulk.is_postgres():  # as _batch_runs: fixed-text statements, prepared, no ORM query built per batch
        runs = dict(
            bulk.select(
                f"SELECT id, exception_id FROM playbook_run WHERE tenant_id = %s AND exception_id {bulk.ANY_UUIDS}",
                [tenant_id, bulk.uuid_list(exception_ids)],
            )
        )
        if not runs:
            return Counter()
        return Counter(
            runs[row[0]]
            for row in bulk.select(
                f"SELECT run_id FROM playbook_run_step WHERE tenant_id = %s AND run_id {bulk.ANY_UUIDS} AND status = %s",
                [tenant_id, bulk.uuid_list(runs), StepStatus.SUCCEEDED.value],
            )
        )
    runs = dict(
        PlaybookRun.objects.filter(tenant_id=tenant_id, exception_id__in=exception_ids).values_list(
            "id", "exception_id"
        )
    )
    if not runs:
        return Counter()
    return Counter(
        str(runs[run_id])
        for run_id in PlaybookRunStep.objects.filter(
            tenant_id=tenant_id, run_id__in=list(runs), status=StepStatus.SUCCEEDED
        ).values_list("run_id", flat=True)
    )
