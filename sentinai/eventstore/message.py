"""The broker message: one batch of events of one tenant for one agent queue, defined here once.

The outbox encodes it (`encode`), the consumer framework decodes it (`decode`); only its JSON form
crosses the broker. A body that is not a batch this agent can read is a PoisonMessage, dead-lettered
whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sentinai.eventstore.events import SUBSCRIPTIONS, Envelope

MESSAGE_VERSION = 1


class PoisonMessage(ValueError):
    """The message is not a batch this agent can read; it is dead-lettered whole."""


@dataclass(frozen=True, slots=True)
class IncomingBatch:
    tenant_id: str
    agent: str
    outbox_ids: list[int]
    events: list[Envelope]


def task_name(queue: str) -> str:
    """The Celery task that consumes an agent queue's batches."""
    return f"agents.{queue}.handle_batch"


def encode(*, tenant_id: str, agent: str, outbox_ids: Sequence[int], events: Sequence[Envelope]) -> dict:
    return {
        "v": MESSAGE_VERSION,
        "tenant_id": tenant_id,
        "agent": agent,
        "outbox_ids": list(outbox_ids),
        "events": [e.to_message() for e in events],
    }


def decode(agent: str, body: Any) -> IncomingBatch:
    """Validate a message body; anything unexpected is a PoisonMessage."""
    try:
        if not isinstance(body, dict) or body.get("v") != MESSAGE_VERSION:
            raise PoisonMessage(f"unsupported message (version {body.get('v') if isinstance(body, dict) else None!r})")
        if body.get("agent") != agent:
            raise PoisonMessage(f"message for agent {body.get('agent')!r} delivered to {agent!r}")
        tenant_id = body["tenant_id"]
        if not isinstance(tenant_id, str) or not tenant_id or tenant_id == "*":
            raise PoisonMessage("message names no tenant")
        outbox_ids = [int(i) for i in body.get("outbox_ids") or []]
        events = [Envelope.from_message(tenant_id, e) for e in body["events"]]
    except PoisonMessage:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PoisonMessage(f"undecodable batch: {type(exc).__name__}: {exc}") from exc
    wanted = SUBSCRIPTIONS.get(agent, frozenset())
    stray = [e.event_type for e in events if e.event_type not in wanted]
    if stray:
        raise PoisonMessage(f"agent {agent!r} does not consume {sorted(set(stray))}")
    return IncomingBatch(tenant_id=tenant_id, agent=agent, outbox_ids=outbox_ids, events=events)


def merge(first: IncomingBatch, second: IncomingBatch) -> IncomingBatch:
    """Two batches of one tenant for one agent as one (coalescing)."""
    if (first.tenant_id, first.agent) != (second.tenant_id, second.agent):
        raise ValueError("only batches of the same tenant and agent merge")
    return IncomingBatch(
        tenant_id=first.tenant_id,
        agent=first.agent,
        outbox_ids=[*first.outbox_ids, *second.outbox_ids],
        events=[*first.events, *second.events],
    )
