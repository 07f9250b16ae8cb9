"""Tool: run requested tool executions and report how they ended.

The calls happen in `perform`, outside the batch transaction (no locks are held while a webhook takes
its time), concurrently for a batch. Each execution moves requested -> running (attempt counted) ->
succeeded | failed | dead_lettered. A retryable failure (timeout, connection error, 5xx, 429) raises,
so the consumer framework schedules a retry with backoff; every attempt carries the execution id as
its idempotency key, so a timed-out call that did land is never a second, distinct action. After the
tool's last attempt the event is dead-lettered and the execution with it.
"""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson
from django.db import connection

from sentinai.eventstore.events import ToolExecutionCompleted
from sentinai.kernel import bulk, ids
from sentinai.kernel.logs import log_context
from sentinai.packs.conditions import exception_view
from sentinai.pipeline.agent import Agent, Decision, Emit, PermanentError, Update
from sentinai.tenancy.scope import tenant_scope
from tools_app import runners
from tools_app.builtins import ToolContext

MAX_PARALLEL_CALLS = 8


class ToolCallFailed(Exception):
    """A retryable failure of one attempt."""


@dataclass(frozen=True)
class Attempt:
    """The effect of one attempt, handed from perform() to decide()."""

    outcome: runners.Outcome
    attempts: int
    max_attempts: int


@dataclass(frozen=True)
class AlreadyFinished:
    status: str


class ToolAgent(Agent):
    name = "tool"
    exception_fields = ("status",)

    def perform(self, batch, events):
        """Mark the executions running (one attempt more each), then call the tools."""
        from exceptions_app.models import ExceptionRecord
        from tools_app.models import Tool, ToolExecution

        wanted = {e.payload["execution_id"]: e for e in events}
        with tenant_scope(batch.tenant_id), connection.cursor() as cursor:
            clause, params = bulk.in_clause(list(wanted), uuids=True)
            cursor.execute(
                "UPDATE tool_execution SET status = 'running', attempts = attempts + 1, "
                "started_at = COALESCE(started_at, CURRENT_TIMESTAMP), updated_at = CURRENT_TIMESTAMP "
                f"WHERE id {clause} AND status IN ('requested', 'running') RETURNING id, attempts, tool_id, request",
                params,
            )
            running = {ids.parse(r[0]): (r[1], r[2], r[3]) for r in cursor.fetchall()}
            tools = {
                t["id"]: t
                for t in Tool.objects.filter(id__in=[v[1] for v in running.values() if v[1]]).values(
                    "id", "kind", "config", "max_attempts"
                )
            }
            missing = set(wanted) - set(running)
            finished = {
                str(r["id"]): r["status"]
                for r in ToolExecution.objects.filter(id__in=list(missing)).values("id", "status")
            }
            views = {
                str(r["id"]): exception_view(str(r["id"]), r)
                for r in ExceptionRecord.objects.filter(id__in=list({e.exception_id for e in events})).values(
                    "id", "exception_type", "severity", "status", "normalized", "payload"
                )
            }
        allowed_hosts = list((batch.tenant.overrides or {}).get("allowed_hosts") or [])

        def attempt(execution_id: str):
            event = wanted[execution_id]
            with log_context(
                exception_id=event.exception_id, event_id=event.event_id, attempt=running[execution_id][0]
            ):
                return _attempt(execution_id, event)

        def _attempt(execution_id: str, event):
            attempts, tool_id, request = running[execution_id]
            tool = tools.get(tool_id)
            if tool is None:
                return Attempt(
                    runners.Outcome("failed", error=f"tool {event.payload['tool']!r} is not registered"), attempts, 1
                )
            request = orjson.loads(request) if isinstance(request, str | bytes) else request
            context = ToolContext(batch.tenant_id, event.exception_id, execution_id, attempts)
            outcome = runners.run(
                kind=tool["kind"],
                config=tool["config"],
                params=(request or {}).get("params") or event.payload.get("params") or {},
                view=views.get(event.exception_id, {}),
                context=context,
                allowed_hosts=allowed_hosts,
            )
            return Attempt(outcome, attempts, tool["max_attempts"])

        effects: dict[str, Any] = {}
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_CALLS, max(1, len(running)))) as pool:
            calls = [(execution_id, contextvars.copy_context()) for execution_id in running]
            results = pool.map(lambda call: call[1].run(attempt, call[0]), calls)
            for execution_id, result in zip(running, results, strict=True):
                effects[wanted[execution_id].event_id] = result
        for execution_id, status in finished.items():
            effects[wanted[execution_id].event_id] = AlreadyFinished(status)
        return effects

    def decide(self, batch, state, event):
        from tools_app.models import ToolExecution

        effect = batch.effects.get(event.event_id)
        execution_id = event.payload["execution_id"]
        if effect is None:
            raise PermanentError(f"tool execution {execution_id} does not exist")
        if isinstance(effect, AlreadyFinished):
            return Decision()  # an execution that already ended (a repeated request)
        outcome, attempts, max_attempts = effect.outcome, effect.attempts, effect.max_attempts
        common = {
            "tool": event.payload["tool"],
            "attempts": attempts,
            "run_id": event.payload.get("run_id"),
            "position": event.payload.get("position"),
        }
        if outcome.status == "retry":
            if attempts >= max_attempts:
                raise PermanentError(f"{outcome.error} (attempt {attempts} of {max_attempts})")
            raise ToolCallFailed(f"{outcome.error} (attempt {attempts} of {max_attempts})")
        values = {
            "status": outcome.status,
            "response": outcome.response,
            "error": outcome.error,
            "finished_at": batch.now,
            "updated_at": batch.now,
        }
        if outcome.request:
            values["request"] = outcome.request
        return Decision(
            records=[Update(ToolExecution, execution_id, values)],
            emit=[
                Emit.of(
                    ToolExecutionCompleted(
                        execution_id=execution_id,
                        status=outcome.status,
                        response=outcome.response,
                        error=outcome.error,
                        **common,
                    )
                )
            ],
        )

    def on_dead_letter(self, batch, state, event, error):
        from tools_app.models import ToolExecution

        execution_id = event.payload["execution_id"]
        effect = batch.effects.get(event.event_id)
        attempts = effect.attempts if isinstance(effect, Attempt) else 0
        return Decision(
            records=[
                Update(
                    ToolExecution,
                    execution_id,
                    {"status": "dead_lettered", "error": error, "finished_at": batch.now, "updated_at": batch.now},
                )
            ],
            emit=[
                Emit.of(
                    ToolExecutionCompleted(
                        execution_id=execution_id,
                        tool=event.payload["tool"],
                        status="dead_lettered",
                        attempts=attempts,
                        error=error,
                        run_id=event.payload.get("run_id"),
                        position=event.payload.get("position"),
                    )
                )
            ],
        )


AGENT = ToolAgent()
