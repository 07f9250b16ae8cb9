"""What an operator does in a browser: Playwright for Python driving Debian's Chromium
(scripts/test-tools.sh installs it; Playwright never downloads a browser) against a live server with
real workers on RabbitMQ and PostgreSQL. The browser may reach loopback only: every other request is
aborted and recorded, so the API docs must render from this server's own files.

On failure a screenshot of the page is saved in the test's tmp_path (named in the failure report). The
operations overview's screenshot is saved in the test's tmp_path on every run, and to
docs/img/admin-overview.png (the README's) when SENTINAI_UPDATE_SCREENSHOTS=1, so a test run leaves
the work tree as it found it.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User

from exceptions_app.models import ExceptionRecord
from sentinai.models import DeadLetter
from sentinai.tenancy.scope import tenant_scope
from tests.support.factories import append, make_exceptions, make_tenant, wait_until
from tests.support.finance import FinanceTenant
from tests.support.host import ROOT
from tests.support.platform import Platform
from tests.support.probes import IMPLEMENTATIONS
from tests.support.scenarios import settlement
from tests.support.webhook import Webhook
from tests.support.workers import WorkerProcess

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

CHROMIUM = "/usr/bin/chromium"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
PASSWORD = "a long pass phrase 42"
SCREENSHOT = ROOT / "docs" / "img" / "admin-overview.png"


@pytest.fixture(scope="module")
def chromium():
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    # Playwright's sync API runs an event loop beside the test; Django's ORM calls of the test itself
    # are still synchronous.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def page(chromium, request, tmp_path):
    """A page that can reach loopback only; `page.blocked` lists what it tried to reach elsewhere."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    blocked: list[str] = []

    def only_loopback(route):
        if urlsplit(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_loopback)
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    tab.blocked = blocked
    yield tab
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        shot = tmp_path / "failure.png"
        tab.screenshot(path=str(shot), full_page=True)
        print(f"screenshot of the failing page: {shot}")
    context.close()


def log_in(page, base_url: str) -> None:
    User.objects.filter(username="ops").delete()
    User.objects.create_superuser("ops", "ops@example.com", PASSWORD)
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    assert "SentinAI administration" in page.inner_text("#site-name")


def test_the_api_docs_render_the_ingest_operation_with_only_loopback_reachable(page, live_server):
    page.goto(f"{live_server.url}/api/docs/")
    ingest = page.locator(
        ".opblock-post .opblock-summary-path", has_text=re.compile(r"^/api/exceptions/\{tenant_id\}$")
    )
    ingest.first.wait_for()
    ingest.first.click()  # expand it: the request body schema renders too
    page.locator(
        ".opblock-post.is-open .opblock-description-wrapper, .opblock-post.is-open .body-param"
    ).first.wait_for()
    assert page.locator(".opblock").count() > 10
    assert page.blocked == [], page.blocked


def test_an_operator_replays_a_dead_letter_and_sees_it_re_driven(page, live_server, log_dir, tmp_path):
    """The triage probe fails while a fault file exists (one attempt allowed): the event is dead-lettered;
    the operator fixes the fault and replays it from the admin; triage applies it."""
    tenant = make_tenant("browser-dl")
    fault = tmp_path / "fault"
    fault.touch()
    env = {"PROBE_FAULT_FILE": str(fault), "SENTINAI_RETRY_POLICIES": '{"triage": {"max_attempts": 1}}'}
    with WorkerProcess(["triage", "policy"], log_dir=log_dir, agents=IMPLEMENTATIONS, env=env):
        (exception_id,) = make_exceptions(tenant.id, 1)
        append(tenant.id, exception_id, "TriageRequested", {"exception_type": "boom"})
        letter = wait_until(lambda: _letter(tenant.id), 30, message="the dead letter")
        fault.unlink()

        log_in(page, live_server.url)
        page.goto(f"{live_server.url}/admin/sentinai/deadletter/?tenant_id={tenant.id}")
        row = page.locator("#result_list tbody tr", has_text="triage")
        assert row.count() == 1 and "Open" in row.inner_text()
        row.locator("input.action-select").check()
        page.select_option("select[name=action]", "replay_selected")
        page.click("button[name=index]")
        assert "Replayed 1 dead letter(s)." in page.inner_text(".messagelist")

        def applied():
            with tenant_scope(tenant.id):
                return (ExceptionRecord.objects.get(id=exception_id).normalized or {}).get("applied")

        assert wait_until(applied, 30, message="triage to apply the replayed event")
        page.goto(f"{live_server.url}/admin/sentinai/deadletter/{letter.pk}/change/")
        assert "Replayed" in page.inner_text("#content-main")
        assert "admin:ops" in page.inner_text("#content-main")  # who asked
        page.goto(f"{live_server.url}/admin/sentinai/exceptionevent/?exception_id={exception_id}")
        events = page.inner_text("#result_list")
        assert "DeadLettered" in events and "PolicyEvaluationRequested" in events


def _letter(tenant_id: str) -> DeadLetter | None:
    with tenant_scope(tenant_id):
        return DeadLetter.objects.filter(consumer="triage").first()


@pytest.fixture(scope="module")
def platform(django_db_setup, tmp_path_factory):
    with Platform(tmp_path_factory.mktemp("platform")) as running:
        yield running


def test_an_operator_opens_an_exception_sees_its_trace_and_the_overview(page, live_server, platform, tmp_path):
    with Webhook() as webhook:
        tenant = FinanceTenant(live_server.url, webhook, prefix="browser")
        exception_id = tenant.report(settlement(50_000))
        tenant.wait_for_event(exception_id, "FeedbackCaptured")

    log_in(page, live_server.url)
    page.click("text=Operations overview")
    page.wait_for_selector("#exceptions-by-status")
    resolved = page.locator(f"#exceptions-by-status tr[data-tenant='{tenant.id}'][data-status='resolved']")
    assert resolved.count() == 1 and "1" in resolved.inner_text()
    assert page.locator("#queue-depth tr[data-queue='triage']").count() == 1
    shot = SCREENSHOT if os.environ.get("SENTINAI_UPDATE_SCREENSHOTS") == "1" else tmp_path / SCREENSHOT.name
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    page.goto(f"{live_server.url}/admin/exceptions_app/exceptionrecord/?tenant__id__exact={tenant.id}")
    page.click(f"#result_list a:has-text('{exception_id}')")
    page.wait_for_selector("text=event chain (trace)")
    chain = page.inner_text("#content-main")
    for event_type in (
        "ExceptionIngested",
        "TriageCompleted",
        "ToolExecutionCompleted",
        "ExceptionResolved",
        "FeedbackCaptured",
    ):
        assert event_type in chain, event_type
    assert chain.index("ExceptionIngested") < chain.index("ExceptionResolved") < chain.index("FeedbackCaptured")
