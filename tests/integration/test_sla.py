"""The SLA monitor announces each SLA event once, however often (and however concurrently) it scans."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from agents.sla.monitor import scan_all_tenants
from exceptions_app.models import ExceptionRecord
from sentinai.models import ExceptionEvent
from sentinai.tenancy.scope import tenant_scope
from tests.support.factories import make_exceptions, make_tenant

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_scans_at_once_and_repeated_scans_announce_each_sla_event_once(purge_broker):
    make_tenant("acme")
    due, imminent, closed, later = make_exceptions("acme", 4)
    now = timezone.now()
    with tenant_scope("acme"):
        ExceptionRecord.objects.filter(id=due).update(
            severity="high", sla_due_at=now - timedelta(seconds=1), sla_imminent_at=now - timedelta(seconds=5)
        )
        ExceptionRecord.objects.filter(id=imminent).update(
            severity="low", sla_due_at=now + timedelta(hours=1), sla_imminent_at=now - timedelta(seconds=1)
        )
        ExceptionRecord.objects.filter(id=closed).update(
            sla_due_at=now - timedelta(seconds=1), sla_imminent_at=now - timedelta(seconds=5), closed_at=now
        )
        ExceptionRecord.objects.filter(id=later).update(
            sla_due_at=now + timedelta(hours=2), sla_imminent_at=now + timedelta(hours=1)
        )

    errors: list[BaseException] = []

    def scan():
        try:
            scan_all_tenants()
        except BaseException as exc:  # reported below: a racing scan must not fail
            errors.append(exc)
        finally:
            connection.close()

    scanners = [threading.Thread(target=scan) for _ in range(2)]
    for thread in scanners:
        thread.start()
    for thread in scanners:
        thread.join()
    assert errors == []
    scan_all_tenants()
    with tenant_scope("acme"):
        events = list(
            ExceptionEvent.objects.filter(event_type__in=("SLAImminent", "SLAExpired")).values_list(
                "exception_id", "event_type"
            )
        )
    assert sorted((str(x), t) for x, t in events) == sorted(
        [(due, "SLAImminent"), (due, "SLAExpired"), (imminent, "SLAImminent")]
    )
