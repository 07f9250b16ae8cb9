"""OpenTelemetry: a W3C traceparent sent with an ingest request is the trace of everything that exception
causes. The API (gunicorn) and the workers (real Celery workers on RabbitMQ) export by OTLP/HTTP to a
receiver in the test, as they would to an operator's collector; with no endpoint set, tracing is off."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sentinai.models import ExceptionEvent
from sentinai.tenancy.scope import tenant_scope
from tests.support.factories import wait_until
from tests.support.finance import FinanceTenant
from tests.support.gunicorn import Gunicorn
from tests.support.host import ROOT
from tests.support.otlp import OtlpReceiver
from tests.support.platform import Platform
from tests.support.scenarios import settlement
from tests.support.webhook import Webhook

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
# Every agent an auto-resolved settlement failure passes through, ingest to FeedbackCaptured.
AGENTS = ("intake", "triage", "policy", "playbook", "tool", "resolution", "feedback")


@pytest.fixture(scope="module")
def receiver():
    with OtlpReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def traced(django_db_setup, tmp_path_factory, receiver):
    log_dir = tmp_path_factory.mktemp("traced")
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    with (
        Platform(log_dir, env={**otel, "OTEL_SERVICE_NAME": "sentinai-worker"}),
        Gunicorn(log_dir, env={**otel, "OTEL_SERVICE_NAME": "sentinai-api"}) as api,
    ):
        yield api


def test_one_exceptions_spans_share_the_callers_trace_from_http_ingest_to_feedback(traced, receiver):
    with Webhook() as webhook:
        tenant = FinanceTenant(traced.url, webhook, prefix="traced")
        exception_id = tenant.report(settlement(50_000), headers={"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01"})
        tenant.wait_for_event(exception_id, "FeedbackCaptured")

    # Every event of the exception carries the trace in its envelope.
    with tenant_scope(tenant.id):
        events = list(ExceptionEvent.objects.filter(exception_id=exception_id).order_by("sequence"))
    carried = {e.event_type: e.metadata.get("traceparent", "") for e in events}
    assert all(tp.split("-")[1] == TRACE_ID for tp in carried.values()), carried

    def complete():
        spans = receiver.of_trace(TRACE_ID)
        names = {s.name for s in spans}
        return (
            spans
            if {f"{a} batch" for a in AGENTS} <= names and any(s.service == "sentinai-api" for s in spans)
            else None
        )

    spans = wait_until(complete, 30, interval=0.3, message="the spans of every hop")
    by_id = {s.span_id: s for s in spans}
    (ingest,) = [s for s in spans if s.service == "sentinai-api" and s.name.startswith("POST")]
    assert ingest.parent_span_id == CLIENT_SPAN and "exceptions" in ingest.name
    intake = next(s for s in spans if s.name == "intake batch")
    assert intake.parent_span_id == ingest.span_id
    for span in (s for s in spans if s.name.endswith(" batch")):
        assert span.service == "sentinai-worker" and span.attributes["sentinai.exception_id"] == exception_id
        # Linked to the context of each event it applied (its causes), all of this trace.
        assert span.links and all(t == TRACE_ID for t, _ in span.links), span
        assert span.parent_span_id in by_id, f"{span.name}: parent {span.parent_span_id} not in the trace"
    feedback = next(s for s in spans if s.name == "feedback batch")
    assert "ExceptionResolved" in feedback.attributes["sentinai.event_types"]
    # The chain of parents leads from feedback back to the caller's span.
    hop, path = feedback, []
    while hop.parent_span_id in by_id:
        path.append(hop.name)
        hop = by_id[hop.parent_span_id]
    assert hop is ingest and {"resolution batch", "tool batch", "intake batch"} <= set(path), path


def test_without_an_otlp_endpoint_tracing_is_off_and_loads_no_sdk():
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    probe = (
        "import django, sys; django.setup(); from sentinai.kernel import tracing; "
        "print(tracing.enabled(), 'opentelemetry.sdk.trace' in sys.modules, tracing.traceparent_for('x'))"
    )
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.split() == ["False", "False", "None"], result.stderr
