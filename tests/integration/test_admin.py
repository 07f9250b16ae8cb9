"""Admin for operators: dead letters (filters, bulk replay and discard), stuck work with re-drive,
every model registered, events read-only, an exception's trace."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from sentinai.models import DeadLetter, ExceptionEvent, Outbox, ProcessedEvent
from sentinai.tenancy.scope import all_tenants_scope, tenant_scope
from sentinai.tenancy.services import tenant_create_or_update
from tests.support.factories import append, make_exceptions
from tools_app.models import ToolExecution
from tools_app.services import tool_execution_request

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def operator(purge_broker):
    User.objects.create_superuser("ops", "ops@example.com", "secret")
    client = Client()
    client.login(username="ops", password="secret")
    return client


def dead_letter(tenant: str, consumer: str = "triage", error: str = "boom") -> DeadLetter:
    (exception_id,) = make_exceptions(tenant, 1)
    event = append(tenant, exception_id, "TriageRequested", {"exception_type": "x"})
    with tenant_scope(tenant):
        Outbox.objects.all().delete()
        return DeadLetter.objects.create(
            tenant_id=tenant, source="handler", consumer=consumer, event_id=event.event_id,
            exception_id=exception_id, event_ids=[event.event_id], error=error, attempts=5,
        )  # fmt: skip


def test_every_model_is_registered_and_events_are_read_only(operator):
    ours = [
        m
        for m in apps.get_models()
        if m._meta.app_label in ("sentinai", "exceptions_app", "playbooks_app", "tools_app")
    ]
    assert ours and all(admin.site.is_registered(m) for m in ours), [m for m in ours if not admin.site.is_registered(m)]
    event_admin = admin.site._registry[ExceptionEvent]
    assert not event_admin.has_change_permission(None) and not event_admin.has_delete_permission(None)


def test_dead_letters_filter_by_tenant_agent_and_error_and_replay_or_discard_in_bulk(operator):
    tenant_create_or_update(tenant_id="acme", domain_pack="finance")
    tenant_create_or_update(tenant_id="globex", domain_pack="finance")
    acme = [dead_letter("acme", error="timeout talking to payments"), dead_letter("acme", error="bad pack")]
    globex = dead_letter("globex", consumer="policy", error="globex breakdown")
    page = operator.get("/admin/sentinai/deadletter/", {"tenant_id": "acme"}).content.decode()
    # (Not the id: ">5<" is also an attempts cell whenever the sequence hands globex's letter id 5.)
    assert "timeout talking" in page and "bad pack" in page and "globex breakdown" not in page
    assert f"/admin/sentinai/deadletter/{globex.pk}/change/" not in page
    page = operator.get("/admin/sentinai/deadletter/", {"consumer": "policy"}).content.decode()
    assert f"/admin/sentinai/deadletter/{globex.pk}/change/" in page and "timeout talking" not in page
    page = operator.get("/admin/sentinai/deadletter/", {"q": "timeout"}).content.decode()
    assert "timeout talking" in page and "bad pack" not in page

    response = operator.post(
        "/admin/sentinai/deadletter/",
        {"action": "replay_selected", "_selected_action": [acme[0].pk, globex.pk]},
        follow=True,
    )
    assert "Replayed 2 dead letter(s)" in response.content.decode()
    with all_tenants_scope():
        assert DeadLetter.objects.get(pk=acme[0].pk).status == "replayed"
        assert Outbox.objects.filter(tenant_id="acme", queue="triage", event_ids=[acme[0].event_id]).exists()
        assert Outbox.objects.filter(tenant_id="globex", queue="policy").exists()

    operator.post("/admin/sentinai/deadletter/", {"action": "discard_selected", "_selected_action": [acme[1].pk]})
    with all_tenants_scope():
        assert DeadLetter.objects.get(pk=acme[1].pk).status == "discarded"
        assert ProcessedEvent.objects.of("triage", [str(acme[1].event_id)]).exists(), "discarded counts as handled"


def test_stuck_outbox_batches_are_listed_and_re_driven(operator):
    tenant_create_or_update(tenant_id="acme", domain_pack="finance")
    (exception_id,) = make_exceptions("acme", 1)
    append("acme", exception_id, "TriageRequested", {"exception_type": "x"})
    with tenant_scope("acme"):
        Outbox.objects.update(created_at=timezone.now() - timedelta(hours=1), published_at=None)
        row = Outbox.objects.get()
    page = operator.get("/admin/sentinai/outbox/", {"stuck": "yes"}).content.decode()
    assert f"/admin/sentinai/outbox/{row.pk}/change/" in page
    response = operator.post(
        "/admin/sentinai/outbox/", {"action": "redrive", "_selected_action": [row.pk]}, follow=True
    )
    assert "Published 1 batch(es) again" in response.content.decode()
    with tenant_scope("acme"):
        assert Outbox.objects.get(pk=row.pk).published_at is not None


def test_tool_executions_stuck_in_running_are_listed_and_re_driven(operator):
    tenant_create_or_update(tenant_id="acme", domain_pack="finance")
    (exception_id,) = make_exceptions("acme", 1)
    with tenant_scope("acme"):
        execution, event_id, _ = tool_execution_request(
            tenant_id="acme",
            exception_id=exception_id,
            tool_name="retry_settlement",
            params={"trade_id": "T-1"},
            requested_by="test",
        )
    with tenant_scope("acme"):
        Outbox.objects.all().delete()
        ToolExecution.objects.filter(pk=execution.pk).update(
            status="running", attempts=1, updated_at=timezone.now() - timedelta(hours=1)
        )
    page = operator.get("/admin/tools_app/toolexecution/", {"stuck": "yes"}).content.decode()
    assert str(execution.pk) in page
    response = operator.post(
        "/admin/tools_app/toolexecution/", {"action": "redrive", "_selected_action": [execution.pk]}, follow=True
    )
    assert "Re-drove 1 execution(s)" in response.content.decode()
    with tenant_scope("acme"):
        assert Outbox.objects.filter(queue="tool", event_ids=[event_id]).exists()


def test_the_exception_page_shows_its_trace(operator):
    tenant_create_or_update(tenant_id="acme", domain_pack="finance")
    (exception_id,) = make_exceptions("acme", 1)
    append("acme", exception_id, "TriageRequested", {"exception_type": "x"})
    page = operator.get(f"/admin/exceptions_app/exceptionrecord/{exception_id}/change/").content.decode()
    assert "<b>TriageRequested</b>" in page


def test_the_overview_shows_the_deepest_lanes(operator):
    tenant_create_or_update(tenant_id="acme", domain_pack="finance")
    (exception_id,) = make_exceptions("acme", 1)
    append("acme", exception_id, "TriageRequested", {"exception_type": "x"})
    page = operator.get("/admin/").content.decode()
    assert "Deepest lanes" in page
    # acme's batch waits in its lane (no worker runs here): the deepest, first of the table.
    rows = page.split('id="deepest-lanes"', 1)[1].split("</table>", 1)[0]
    assert rows.split("<td>", 1)[1].startswith("triage.2</td><td>1</td>"), rows
