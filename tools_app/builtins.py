"""Builtin tools: Python callables registered by name. A pack's `builtin` tool names one of these.

Each takes the rendered params and a context, returns a JSON-able response, and raises ToolError
(retryable or not) on failure. The shipped ones stand in for a tenant's systems: deterministic
answers derived from their input, so scenarios and tests are repeatable.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("sentinai.tools")


class ToolError(Exception):
    def __init__(self, message: str, *, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class ToolContext:
    tenant_id: str
    exception_id: str
    execution_id: str  # the idempotency key of the action
    attempt: int


REGISTRY: dict[str, Callable[[dict[str, Any], ToolContext], Any]] = {}


def builtin(name: str):
    def register(fn):
        REGISTRY[name] = fn
        return fn

    return register


def _reference(*parts: Any) -> str:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()[:12]


@builtin("lookup_counterparty")
def lookup_counterparty(params, ctx):
    counterparty = params.get("counterparty")
    if not counterparty:
        raise ToolError("no counterparty given", retryable=False)
    return {"counterparty": counterparty, "status": "active", "standing_instructions": "on file"}


@builtin("retry_settlement")
def retry_settlement(params, ctx):
    if not params.get("trade_id"):
        raise ToolError("no trade_id given", retryable=False)
    return {"resubmitted": True, "trade_id": params["trade_id"], "instruction_id": _reference(ctx.execution_id)}


@builtin("rerun_feed")
def rerun_feed(params, ctx):
    return {"rerun": True, "feed": params.get("feed"), "job_id": _reference(ctx.execution_id)}


@builtin("verify_eligibility")
def verify_eligibility(params, ctx):
    return {"eligible": True, "claim_id": params.get("claim_id"), "payer": params.get("payer")}


@builtin("resubmit_claim")
def resubmit_claim(params, ctx):
    return {"resubmitted": True, "claim_id": params.get("claim_id"), "submission_id": _reference(ctx.execution_id)}


@builtin("notify")
def notify(params, ctx):
    logger.info(
        "notification to %s: %s",
        params.get("channel"),
        params.get("message"),
        extra={"tenant_id": ctx.tenant_id, "exception_id": ctx.exception_id},
    )
    return {"delivered": True, "channel": params.get("channel")}
