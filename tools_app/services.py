"""Write services of tools: requesting an execution, and the attempts the tool agent makes."""

from __future__ import annotations

import contextvars
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from django.conf import settings
from django.db import IntegrityError, connection, transaction

from exceptions_app.selectors import exception_views
from exceptions_app.services import ExceptionNotFound
from sentinai.eventstore import store
from sentinai.eventstore.events import Envelope
from sentinai.kernel import bulk, ids
from sentinai.kernel.logs import log_context
from sentinai.models import ExceptionEvent, Tenant
from sentinai.tenancy.scope import tenant_scope
from tools_app import runners, selectors
from tools_app.builtins import ToolContext
from tools_app.models import ExecutionStatus, Tool, ToolExecution


class UnknownTool(LookupError):
    pass


def tool_for(tenant_id: str, name: str) -> Tool | None:
    """The latest active version of a tenant's tool."""
    return Tool.objects.filter(tenant_id=tenant_id, name=name, is_active=True).order_by("-version").first()


def tool_execution_request(
    *,
    tenant_id: str,
    exception_id: str,
    tool_name: str,
    params: dict[str, Any],
    requested_by: str,
    actor: str | None = None,
    idempotency_key: str | None = None,
) -> tuple[ToolExecution, str, bool]:
    """Create a requested execution and its ToolExecutionRequested event, in the caller's transaction;
    returns the execution, the event's id and whether both existed already. The execution id is the idempotency key of every attempt the tool agent makes.

    With an `idempotency_key` (a client's retry of a manual run) the tenant's execution already
    requested under that key is returned instead, with its event, and the flag says so; nothing runs twice.
    A concurrent first request under the same key raises LookupError (retry)."""
    if idempotency_key is not None:
        earlier = _requested_under(tenant_id, idempotency_key)
        if earlier is not None:
            return (*earlier, True)
    tool = tool_for(tenant_id, tool_name)
    if tool is None:
        raise UnknownTool(tool_name)
    streams = store.lock_streams(tenant_id, [exception_id])
    if exception_id not in streams:
        raise ExceptionNotFound(exception_id)
    try:
        with transaction.atomic():
            execution = ToolExecution.objects.create(
                id=ids.new_id(),
                tenant_id=tenant_id,
                exception_id=exception_id,
                tool=tool,
                tool_name=tool.name,
                status=ExecutionStatus.REQUESTED,
                request={"params": params},
                requested_by=requested_by,
                idempotency_key=idempotency_key,
            )
    except IntegrityError as exc:
        raise LookupError(f"a concurrent request under Idempotency-Key {idempotency_key!r}") from exc
    payload: dict[str, Any] = {"execution_id": str(execution.id), "tool": tool.name, "params": params}
    if actor is not None:
        payload["actor"] = actor
    event = store.NewEvent(exception_id, "ToolExecutionRequested", payload)
    (envelope,) = store.append(tenant_id=tenant_id, events=[event], producer="api", streams=streams)
    return execution, envelope.event_id, False


def _requested_under(tenant_id: str, idempotency_key: str) -> tuple[ToolExecution, str] | None:
    execution = ToolExecution.objects.filter(tenant_id=tenant_id, idempotency_key=idempotency_key).first()
    if execution is None:
        return None
    event_id = (
        ExceptionEvent.objects.filter(
            tenant_id=tenant_id,
            exception_id=execution.exception_id,
            event_type="ToolExecutionRequested",
            payload__execution_id=str(execution.id),
        )
        .values_list("event_id", flat=True)
        .get()
    )
    return execution, str(event_id)


def _executions_open(execution_ids: list[str]) -> dict[str, tuple[int, int | None, Any, Any]]:
    """The executions that have not ended: execution id -> (attempts so far, tool id, request, started_at)."""
    clause, params = bulk.in_clause(execution_ids, uuids=True)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, attempts, tool_id, request, started_at FROM tool_execution WHERE id {clause} "
            "AND status IN ('requested', 'running')",
            params,
        )
        return {ids.parse(r[0]): (r[1], r[2], r[3], r[4]) for r in cursor.fetchall()}


def _executions_start(execution_ids: list[str]) -> dict[str, int]:
    """Mark the executions that have not ended running, one attempt more each: execution id -> attempts.
    One statement, so concurrent batches cannot both count an attempt as their own."""
    if not execution_ids:
        return {}
    clause, params = bulk.in_clause(execution_ids, uuids=True)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE tool_execution SET status = 'running', attempts = attempts + 1, "
            "started_at = COALESCE(started_at, CURRENT_TIMESTAMP), updated_at = CURRENT_TIMESTAMP "
            f"WHERE id {clause} AND status IN ('requested', 'running') RETURNING id, attempts",
            params,
        )
        return {ids.parse(r[0]): r[1] for r in cursor.fetchall()}


def tool_executions_attempt(
    *, tenant: Tenant, requests: list[Envelope]
) -> dict[str, runners.Attempt | runners.AlreadyFinished]:
    """Make one attempt of each requested execution (ToolExecutionRequested events). Returns, per event id,
    the attempt's outcome, or AlreadyFinished for an execution that had ended; an execution that does not
    exist is left out.

    A call that leaves the process (an HTTP tool) is counted first: its executions are marked running, one
    attempt more, and that commits before the calls run, concurrently and outside any transaction (no locks
    are held while a webhook takes its time; a worker that dies mid-call has still used the attempt). An
    in-process builtin has no effect outside the process and nothing to wait for, so it is not marked: it
    runs at once, and the batch's write that ends the execution records the attempt with the outcome - one
    write of the execution fewer (docs/performance.md, "Builtin attempts recorded with their outcome"). Only
    a builtin's retryable failure is counted on its own, as a call's is, since the retry's batch commits
    nothing else."""
    wanted = {e.payload["execution_id"]: e for e in requests}
    with tenant_scope(tenant.id):
        open_ = _executions_open(list(wanted))
        tools = selectors.tool_run_configs(tenant=tenant, tool_ids=[v[1] for v in open_.values() if v[1]])
        calls = [i for i in open_ if (tools.get(open_[i][1]) or {}).get("kind") == "http"]
        counted = _executions_start(calls)
        # A call's execution that ended between the read and the mark (a concurrent batch) is not made.
        ended = set(wanted) - set(open_) | set(calls) - set(counted)
        finished = selectors.execution_statuses(execution_ids=list(ended))
        # What a call's URL and body are rendered from; a builtin gets its rendered params only.
        views = exception_views(exception_ids=list({wanted[i].exception_id for i in calls if i in counted}))
    allowed_hosts = list((tenant.overrides or {}).get("allowed_hosts") or [])
    allowed_cidrs = list((tenant.overrides or {}).get("allowed_cidrs") or [])

    def attempt(execution_id: str) -> runners.Attempt:
        event = wanted[execution_id]
        before, tool_id, request, started_at = open_[execution_id]
        recorded = execution_id in counted
        attempts = counted[execution_id] if recorded else before + 1
        with log_context(exception_id=event.exception_id, event_id=event.event_id, attempt=attempts):
            tool = tools.get(tool_id)
            if tool is None:
                outcome = runners.Outcome("failed", error=f"tool {event.payload['tool']!r} is not registered")
                return runners.Attempt(outcome, attempts, 1, recorded=False, started_at=started_at)
            request = orjson.loads(request) if isinstance(request, str | bytes) else request
            outcome = runners.run(
                kind=tool["kind"],
                config=tool["config"],
                params=(request or {}).get("params") or event.payload.get("params") or {},
                view=views.get(event.exception_id, {}),
                context=ToolContext(tenant.id, event.exception_id, execution_id, attempts),
                allowed_hosts=allowed_hosts,
                allowed_cidrs=allowed_cidrs,
            )
            return runners.Attempt(outcome, attempts, tool["max_attempts"], recorded=recorded, started_at=started_at)

    effects: dict[str, runners.Attempt | runners.AlreadyFinished] = {}
    # Builtin tools are in-process Python, so threads would only take turns on the GIL: they run
    # here, one after the other, as does a lone network call. Network calls run concurrently.
    waiting = [i for i in calls if i in counted]
    if len(waiting) < 2:
        waiting = []
    here = set(open_) - ended - set(waiting)
    for execution_id in open_:
        if execution_id in here:
            effects[wanted[execution_id].event_id] = attempt(execution_id)
    if waiting:
        parallel = max(1, settings.SENTINAI["TOOL_PARALLEL_CALLS"])
        with ThreadPoolExecutor(max_workers=min(parallel, len(waiting))) as pool:
            # Each call runs in a copy of the caller's context, so its log lines carry the batch's fields.
            runs = [(execution_id, contextvars.copy_context()) for execution_id in waiting]
            results = pool.map(lambda call: call[1].run(attempt, call[0]), runs)
            for execution_id, result in zip(waiting, results, strict=True):
                effects[wanted[execution_id].event_id] = result
    # A builtin's retryable failure is its attempt's only trace (the retry commits nothing else): count it
    # now, as a call's is counted, and say so to decide.
    retried = {
        execution_id: effect
        for execution_id in here
        if not (effect := effects[wanted[execution_id].event_id]).recorded and effect.outcome.status == "retry"
    }
    if retried:
        with tenant_scope(tenant.id):
            counts = _executions_start(list(retried))
        for execution_id, effect in retried.items():
            effects[wanted[execution_id].event_id] = dataclasses.replace(
                effect, recorded=True, attempts=counts.get(execution_id, effect.attempts)
            )
    for execution_id, status in finished.items():
        effects[wanted[execution_id].event_id] = runners.AlreadyFinished(status)
    return effects
