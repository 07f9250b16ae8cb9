"""The admin an operator can enter: titled for SentinAI, a login made by `manage.py create_operator` (or
`make run`'s demo login, never under production settings), and the operations overview read from the
projections, the delivery tables and the broker (PostgreSQL and RabbitMQ, real)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from kombu import Producer

from config import routing
from config.celery import app as celery_app
from exceptions_app.models import ExceptionRecord
from sentinai.management.commands import seed_demo
from sentinai.models import Outbox
from sentinai.tenancy.scope import tenant_scope
from sentinai.tenancy.services import tenant_create_or_update
from tests.support.api import make_dead_letter
from tests.support.factories import append, make_exceptions
from tests.support.host import ROOT

pytestmark = pytest.mark.django_db(transaction=True)


def login(username: str, password: str) -> Client:
    client = Client()
    response = client.post("/admin/login/?next=/admin/", {"username": username, "password": password})
    assert response.status_code == 302 and response.url == "/admin/", response.content.decode()[:500]
    return client


def test_create_operator_makes_a_login_to_the_admin_titled_for_sentinai(monkeypatch):
    out = io.StringIO()
    call_command("create_operator", "alice", "--email", "alice@example.com", stdout=out)
    password = out.getvalue().split("password (shown once): ")[1].strip()
    page = login("alice", password).get("/admin/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "SentinAI administration" in html and "Django administration" not in html
    assert 'href="/admin/overview/"' in html

    # An existing login is not overwritten unless asked; a weak password is refused and changes nothing.
    with pytest.raises(CommandError, match="exists"):
        call_command("create_operator", "alice", stdout=io.StringIO())
    monkeypatch.setenv("SENTINAI_OPERATOR_PASSWORD", "123")
    with pytest.raises(CommandError, match="too short"):
        call_command("create_operator", "alice", "--reset-password", stdout=io.StringIO())
    assert User.objects.get(username="alice").check_password(password)
    monkeypatch.setenv("SENTINAI_OPERATOR_PASSWORD", "a long pass phrase 42")
    call_command("create_operator", "alice", "--reset-password", stdout=io.StringIO())
    login("alice", "a long pass phrase 42")


def test_the_demo_login_exists_only_where_demo_logins_are_on(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    settings.SENTINAI = {**settings.SENTINAI, "DEMO_LOGIN": False}
    assert seed_demo.demo_operator_login() is None
    assert not User.objects.exists() and not (tmp_path / "demo-operator.json").exists()

    settings.SENTINAI = {**settings.SENTINAI, "DEMO_LOGIN": True}
    first = seed_demo.demo_operator_login()
    assert json.loads((tmp_path / "demo-operator.json").read_text()) == first
    assert seed_demo.demo_operator_login() == first  # kept across starts
    login(first["username"], first["password"])


def test_production_settings_turn_the_demo_login_off():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.production", "SENTINAI_DEMO_LOGIN": "true"}
    env["SECRET_KEY"] = "k" + os.urandom(48).hex()
    probe = "import django; django.setup(); from django.conf import settings; print(settings.SENTINAI['DEMO_LOGIN'])"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "False", result.stderr


def test_the_operations_overview_counts_what_the_tables_and_the_broker_hold(purge_broker):
    for tenant_id in ("acme", "globex"):
        tenant_create_or_update(tenant_id=tenant_id, domain_pack="finance")
    acme = make_exceptions("acme", 3)
    (globex,) = make_exceptions("globex", 1)
    with tenant_scope("acme"):
        ExceptionRecord.objects.filter(id__in=acme[:2]).update(status="resolved", severity="high")
        ExceptionRecord.objects.filter(id=acme[2]).update(status="escalated", severity="critical")
    # An SLA expiry in the last hour (globex), two open dead letters of triage and a replayed one of tool.
    append("globex", globex, "SLAExpired", {"severity": "low", "sla_due_at": "2026-01-01T00:00:00+00:00"})
    make_dead_letter("acme", consumer="triage")
    make_dead_letter("acme", consumer="triage")
    make_dead_letter("acme", consumer="tool", status="replayed")
    # Two batches owed to triage, never published.
    with tenant_scope("acme"):
        Outbox.objects.bulk_create([Outbox(tenant_id="acme", queue="triage", event_ids=[x]) for x in acme[:2]])
    # Three messages waiting on a feedback lane (acme's), nobody consuming.
    with celery_app.connection_for_write() as conn:
        producer = Producer(conn.default_channel, exchange=routing.EXCHANGE)
        for _ in range(3):
            producer.publish({"v": 0}, routing_key=routing.lane_queue("feedback", "acme"), serializer="json")

    User.objects.create_superuser("ops", "ops@example.com", "a long pass phrase 42")
    page = login("ops", "a long pass phrase 42").get("/admin/overview/")
    assert page.status_code == 200
    html = page.content.decode()
    rows = _rows(html)
    assert rows["exceptions-by-status"][("acme", "resolved")] == {"critical": "0", "high": "2", "-": "0"}
    assert rows["exceptions-by-status"][("acme", "escalated")]["critical"] == "1"
    assert rows["exceptions-by-status"][("globex", "received")]["-"] == "1"
    assert rows["dead-letters-by-agent"][("triage",)][:2] == ["2", "0"]
    assert rows["dead-letters-by-agent"][("tool",)][:2] == ["0", "1"]
    assert rows["sla-breaches"][("globex",)] == ["1", "0"]
    unpublished, published, oldest = rows["outbox-backlog"][("triage",)]
    assert (unpublished, published) == ("2", "0") and 0 <= float(oldest) < 60
    assert rows["queue-depth"][("feedback",)] == ["3", "0"]
    assert set(rows["queue-depth"]) == {(q.name.split(".", 1)[0],) for q in routing.work_queues()}
    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_purge(routing.lane_queue("feedback", "acme"))


def test_the_overview_is_for_staff_only():
    response = Client().get("/admin/overview/")
    assert response.status_code == 302 and response.url.startswith("/admin/login/")


def _rows(html: str) -> dict[str, dict]:
    """{table id: {key cells: the other cells}}, exceptions keyed (tenant, status) -> {severity: count}."""
    from html.parser import HTMLParser

    class Tables(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tables, self.current, self.row, self.cell, self.head = {}, None, None, None, []

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "div" and "module" in (attrs.get("class") or ""):
                self.current = attrs.get("id")
                self.tables[self.current] = []
                self.head = []
            elif tag == "tr":
                self.row = []
            elif tag in ("td", "th"):
                self.cell = ""

        def handle_endtag(self, tag):
            if tag in ("td", "th") and self.row is not None:
                self.row.append(self.cell.strip())
                self.cell = None
            elif tag == "tr" and self.row is not None:
                if self.current and self.row and self.row[0] != "tenant" and self.row[0] not in ("agent", "queue"):
                    self.tables[self.current].append(self.row)
                elif self.current:
                    self.head = self.row
                    self.tables[self.current + ":head"] = self.row
                self.row = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

    parser = Tables()
    parser.feed(html)
    result: dict[str, dict] = {}
    head = parser.tables.get("exceptions-by-status:head", [])
    result["exceptions-by-status"] = {
        (r[0], r[1]): dict(zip(head[2:], r[2:], strict=True))
        for r in parser.tables["exceptions-by-status"]
        if len(r) > 2
    }
    for table in ("dead-letters-by-agent", "outbox-backlog", "queue-depth", "sla-breaches"):
        result[table] = {(r[0],): r[1:] for r in parser.tables[table] if len(r) > 1}
    return result
