"""What an agent provides to the consumer framework: a pure decision function over events.

An agent never touches the broker and never writes tables itself. For each event of a batch the
framework calls `decide(batch, state, event)` with the loaded state of the event's exception and gets
back a `Decision`: events to emit, projection changes on the exception row, and records to upsert
in the agent's own tables. The framework does all I/O: loading (through `load`), locking,
idempotency, ordering, retries, bulk writes, the outbox.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from django.db import models

from sentinai.eventstore.events import Envelope, EventPayload


@dataclass(frozen=True, slots=True)
class Emit:
    """An event to append, for the cause's exception unless `exception_id` says otherwise."""

    event_type: str
    payload: dict[str, Any] | EventPayload
    exception_id: str | None = None

    @classmethod
    def of(cls, payload: EventPayload, exception_id: str | None = None) -> Emit:
        return cls(type(payload).event_type, payload, exception_id)


@dataclass(frozen=True, slots=True)
class Upsert:
    """Insert a row, or update it where `unique` (field names of a unique constraint) matches."""

    model: type[models.Model]
    values: dict[str, Any]
    unique: tuple[str, ...] = ("id",)


@dataclass(frozen=True, slots=True)
class Update:
    """Change some fields of an existing row, found by primary key."""

    model: type[models.Model]
    pk: Any
    values: dict[str, Any]


@dataclass(slots=True)
class Decision:
    """What deciding on one event produced: events to emit, changes of the exception projection,
    records of the agent's own tables, and `state` - changes to fold into the in-memory state the
    next event of the same exception in this batch is decided on (not written by the framework)."""

    emit: list[Emit] = field(default_factory=list)
    exception: dict[str, Any] = field(default_factory=dict)
    records: list[Upsert | Update] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)


class PermanentError(Exception):
    """The event can never succeed (e.g. it contradicts the stored state): dead-letter it at once
    instead of retrying."""


@dataclass(slots=True)
class Batch:
    """What a decision may read: the tenant, the batch's events, the time the batch started (a pure
    function must not read the clock), data the agent loaded, effect results."""

    agent: str
    tenant_id: str
    tenant: Any
    now: datetime
    events: list[Envelope]
    data: dict[str, Any] = field(default_factory=dict)
    effects: dict[str, Any] = field(default_factory=dict)


class Agent:
    """Base of every agent. Subclasses set `name` and implement `decide`."""

    name: ClassVar[str]
    # Fields of the exception row the decision reads (state[...]); locked rows are loaded with them.
    exception_fields: ClassVar[tuple[str, ...]] = ("status",)

    def perform(self, batch: Batch, events: list[Envelope]) -> dict[str, Any]:
        """Side effects outside the database transaction (the tool agent's calls). Runs before the
        batch transaction, only for events not processed yet; results reach `decide` as
        batch.effects[event_id]. Default: none."""
        return {}

    def load(self, batch: Batch, states: dict[str, dict[str, Any]]) -> None:
        """Bulk-load what decisions need into batch.data (inside the batch transaction)."""

    def decide(self, batch: Batch, state: dict[str, Any], event: Envelope) -> Decision:
        raise NotImplementedError

    def evolve(self, batch: Batch, state: dict[str, Any], decision: Decision) -> None:
        """Fold a decision into the in-memory state, so the next event of the same exception in the
        batch sees it. Default: apply the exception projection changes."""
        state.update(decision.exception)

    def on_dead_letter(self, batch: Batch, state: dict[str, Any], event: Envelope, error: str) -> Decision | None:
        """The decision to apply when `event` is dead-lettered, or None to leave it unapplied (its
        successors for this agent then wait for a replay)."""
        return None
