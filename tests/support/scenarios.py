"""What the end-to-end tests report - a settlement failure of the shipped finance pack - and how they
judge the event chain that comes back."""

from __future__ import annotations

import uuid

TERMINAL = {"resolved", "escalated", "invalid"}


def settlement(amount: float, **extra) -> dict:
    return {
        "trade_id": f"T-{uuid.uuid4().hex[:8]}",
        "amount": amount,
        "currency": "EUR",
        "counterparty": "BANK OF EXAMPLE",
        "reason": "insufficient securities",
        **extra,
    }


def assert_causal_chain(events: list[dict]) -> None:
    """Sequence numbers 1..n without gaps, and every event caused by an earlier event of the chain
    (except the first, and the scheduler's)."""
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    seen: set[str] = set()
    for event in events:
        if event["causation_id"] is not None:
            assert event["causation_id"] in seen, f"{event['event_type']} caused by an event not before it"
        else:
            assert event["producer"] in ("api", "sla"), event
        seen.add(event["event_id"])


def types(events: list[dict]) -> list[str]:
    return [e["event_type"] for e in events]


def is_subsequence(expected: list[str], actual: list[str]) -> bool:
    remaining = iter(actual)
    return all(item in remaining for item in expected)
