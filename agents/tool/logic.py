"""Tool: run requested tool executions and report how they ended.

The calls happen in `perform` (tools_app.services.tool_executions_attempt), outside the batch
transaction (no locks are held while a webhook takes its time), concurrently for a batch. Each
execution moves requested -> running (attempt counted) -> succeeded | failed | dead_lettered; an in-process
builtin's attempt that ends goes from requested to its end in one write, which counts it. A
retryable failure (timeout, connection error, 5xx, 429) raises, so the consumer framework schedules
a retry with backoff; every attempt carries the execution id as its idempotency key, so a timed-out
call that did land is never a second, distinct action. After the tool's last attempt the event is
dead-lettered and the execution with it.
"""

from __future__ import annotations

from sentinai.eventstore.events import ToolExecutionCompleted
from sentinai.pipeline.agent import Agent, Decision, Emit, PermanentError, Update
from tools_app import services
from tools_app.models import ToolExecution
from tools_app.runners import AlreadyFinished, Attempt


class ToolCallFailed(Exception):
    """A retryable failure of one attempt."""


def _attempt_record(batch, effect) -> dict:
    """The columns an attempt that was not counted before it ran (an in-process builtin's) sets with its
    outcome: the count, and the start of the first attempt. Nothing for any other effect."""
    if not isinstance(effect, Attempt) or effect.recorded:
        return {}
    return {"attempts": effect.attempts, "started_at": effect.started_at or batch.now}


class ToolAgent(Agent):
    name = "tool"
    exception_fields = ("status",)

    def perform(self, batch, events):
        return services.tool_executions_attempt(tenant=batch.tenant, requests=events)

    def decide(self, batch, state, event):
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
        values.update(_attempt_record(batch, effect))
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
        execution_id = event.payload["execution_id"]
        effect = batch.effects.get(event.event_id)
        attempts = effect.attempts if isinstance(effect, Attempt) else 0
        values = {"status": "dead_lettered", "error": error, "finished_at": batch.now, "updated_at": batch.now}
        values.update(_attempt_record(batch, effect))
        return Decision(
            records=[Update(ToolExecution, execution_id, values)],
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
