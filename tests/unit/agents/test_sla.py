"""The SLA monitor's decision: which of SLAImminent and SLAExpired an open exception is due, each once."""

from datetime import UTC, datetime, timedelta

from agents.sla.logic import due_events

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def state(due_in: timedelta, imminent_in: timedelta | None, **fields) -> dict:
    return {
        "severity": "high",
        "sla_due_at": NOW + due_in,
        "sla_imminent_at": NOW + imminent_in if imminent_in is not None else None,
        "sla_imminent_sent": False,
        "sla_expired_sent": False,
        "closed_at": None,
        **fields,
    }


def test_past_the_imminent_point_an_exception_is_imminent():
    due = NOW + timedelta(minutes=5)

    (event,) = due_events(state(timedelta(minutes=5), timedelta(minutes=-1)), NOW, 0.8)

    assert event.event_type == "SLAImminent"
    assert (event.severity, event.sla_due_at, event.fraction) == ("high", due.isoformat(), 0.8)


def test_past_the_deadline_an_exception_is_imminent_and_expired():
    due = NOW - timedelta(minutes=1)

    events = due_events(state(timedelta(minutes=-1), timedelta(minutes=-5)), NOW, 0.8)

    assert [e.event_type for e in events] == ["SLAImminent", "SLAExpired"]
    assert (events[1].severity, events[1].sla_due_at) == ("high", due.isoformat())


def test_each_event_is_due_once():
    expired_only = due_events(state(timedelta(0), timedelta(minutes=-5), sla_imminent_sent=True), NOW, 0.8)
    assert [e.event_type for e in expired_only] == ["SLAExpired"]

    both_sent = state(timedelta(minutes=-1), timedelta(minutes=-5), sla_imminent_sent=True, sla_expired_sent=True)
    assert due_events(both_sent, NOW, 0.8) == []


def test_before_the_imminent_point_nothing_is_due():
    assert due_events(state(timedelta(minutes=5), timedelta(minutes=1)), NOW, 0.8) == []


def test_without_an_imminent_point_the_deadline_is_both():
    assert due_events(state(timedelta(seconds=1), None), NOW, 0.8) == []
    events = due_events(state(timedelta(0), None), NOW, 0.8)
    assert [e.event_type for e in events] == ["SLAImminent", "SLAExpired"]


def test_closed_exceptions_and_exceptions_without_a_deadline_are_never_due():
    closed = state(timedelta(minutes=-1), timedelta(minutes=-5), closed_at=NOW - timedelta(minutes=2))
    assert due_events(closed, NOW, 0.8) == []
    assert due_events({"sla_due_at": None, "closed_at": None}, NOW, 0.8) == []
