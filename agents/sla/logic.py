"""The SLA monitor's decision: which SLA events an open exception is due, given the time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sentinai.eventstore.events import SLAExpired, SLAImminent


def due_events(state: dict[str, Any], now: datetime, fraction: float) -> list[SLAImminent | SLAExpired]:
    """SLAImminent once the configured fraction of the window has passed, SLAExpired once the
    deadline has; each at most once (the `*_sent` flags), and never for a closed exception."""
    due_at = state.get("sla_due_at")
    if due_at is None or state.get("closed_at") is not None:
        return []
    events: list[SLAImminent | SLAExpired] = []
    imminent_at = state.get("sla_imminent_at") or due_at
    if not state.get("sla_imminent_sent") and now >= imminent_at:
        events.append(SLAImminent(severity=state.get("severity"), sla_due_at=due_at.isoformat(), fraction=fraction))
    if not state.get("sla_expired_sent") and now >= due_at:
        events.append(SLAExpired(severity=state.get("severity"), sla_due_at=due_at.isoformat()))
    return events
