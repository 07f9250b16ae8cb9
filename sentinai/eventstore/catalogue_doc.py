"""Render docs/events.md from the event catalogue (manage.py render_event_catalogue)."""

from __future__ import annotations

import inspect

from sentinai.eventstore.events import CATALOGUE, SUBSCRIBERS, SUBSCRIPTIONS

HEADER = """# Event catalogue

Generated from `sentinai/eventstore/events.py` by `python manage.py render_event_catalogue`; a test fails when
this file and the code disagree. Every event is a row of `exception_event` (the event store, docs/architecture.md): `event_id`,
`event_type`, `tenant_id`, `exception_id` (the correlation id), a gap-free per-exception `sequence`,
`causation_id`, `producer`, a schema-versioned `payload`, `metadata` and `recorded_at`.

Consumers are declared once, in `SUBSCRIPTIONS`; appending an event writes one outbox row per
consuming agent's queue. Events with no consumer are recorded for the exception's history, its trace,
and the query APIs.

## On Kafka: the event stream

With a Kafka cluster configured (`KAFKA_BOOTSTRAP_SERVERS`), **every** event of this catalogue is also
published to its tenant's topic, `sentinai.events.<tenant>` (`SENTINAI_KAFKA_TOPIC_TEMPLATE`), by
`manage.py relay_event_stream` from the `stream_outbox` rows its append wrote:

| part | content |
|---|---|
| key | `exception_id`: an exception's events share a partition, in `sequence` order |
| value | the envelope as JSON: `tenant_id`, `event_id`, `event_type`, `exception_id`, `sequence`, `causation_id`, `producer`, `payload`, `schema_version`, `metadata`, `recorded_at` (the store's time) |
| headers | `event_id`, `event_type`, `tenant_id`, `schema_version` |

Delivery is at least once: de-duplicate on `event_id` (a repeat is the same event, never a reordering).
`manage.py replay_event_stream --tenant T [--since TIME]` publishes a tenant's history again.

## Who consumes what

| agent (queue) | consumes |
|---|---|
"""


def _type_name(annotation) -> str:
    text = inspect.formatannotation(annotation)
    # A literal "|" would split the Markdown table cell.
    return text.replace("typing.", "").replace("NoneType", "None").replace("|", "\\|")


def _fields(cls) -> list[str]:
    rows = []
    for name, field in cls.model_fields.items():
        required = field.is_required()
        default = "" if required else f" = {field.default!r}".replace("|", "\\|")
        rows.append(f"`{name}`: {_type_name(field.annotation)}{default}")
    return rows


def render() -> str:
    out = [HEADER]
    for agent, types in SUBSCRIPTIONS.items():
        listed = ", ".join(f"`{t}`" for t in sorted(types)) or "— (runs on a schedule: the SLA scan)"
        out.append(f"| `{agent}` | {listed} |\n")
    out.append("\n## Events\n\n| event | v | producers | consumers | payload |\n|---|---|---|---|---|\n")
    for name, cls in CATALOGUE.items():
        doc = " ".join((cls.__doc__ or "").split())
        consumers = ", ".join(f"`{c}`" for c in SUBSCRIBERS[name]) or "—"
        producers = ", ".join(f"`{p}`" for p in cls.producers)
        payload = "<br>".join(_fields(cls)) or "—"
        out.append(f"| **{name}**<br>{doc} | {cls.schema_version} | {producers} | {consumers} | {payload} |\n")
    return "".join(out)
