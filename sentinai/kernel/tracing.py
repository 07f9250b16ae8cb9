"""Traces in OpenTelemetry, exported by OTLP to the tracing system the operator runs.

Off unless OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set: then no SDK is
loaded, no middleware added, and the pipeline's per-event cost is one check of a module global. On:

- the API is instrumented by opentelemetry-instrumentation-django: a W3C `traceparent` header on a
  request (ingest included) is the parent of the request's span;
- every event appended while a span is current carries that span's context in its envelope
  (`metadata.traceparent`, stored with the event and sent with it to every agent);
- every agent batch opens one span per exception it holds ("<agent> batch"), a child of the first
  event's context and linked to every event's context of that exception (the causes); the events the
  agent emits for the exception carry that span's context on to the next hop.

So one exception's spans, from the HTTP ingest to FeedbackCaptured, share one trace id. The standard
OTEL_* variables configure the exporter and the batch processor (OTEL_SERVICE_NAME, default
"sentinai"; OTEL_BSP_SCHEDULE_DELAY, ...); OTEL_SDK_DISABLED=true turns it off.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

TRACEPARENT = "traceparent"

_tracer: Any = None
_propagator: Any = None
# exception id -> traceparent of the agent span the events appended for it now belong to
_batch_contexts: ContextVar[dict[str, str] | None] = ContextVar("sentinai_batch_trace_contexts", default=None)


def endpoint_configured() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def enabled() -> bool:
    return _tracer is not None


def configure(exporter: Any = None, *, instrument_django: bool = True) -> bool:
    """Set up tracing for this process when an OTLP endpoint is configured (or `exporter` is given: the
    SDK's in-memory exporter in tests). Called once at start-up (sentinai/apps.py), before the WSGI
    handler loads its middleware. Returns whether tracing is on."""
    global _tracer, _propagator
    if _tracer is not None:
        return True
    if exporter is None and not endpoint_configured():
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or "sentinai"})
    provider = TracerProvider(resource=resource)
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # Batched and in a background thread (re-created after a fork): no network call per event.
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    if instrument_django:
        from opentelemetry.instrumentation.django import DjangoInstrumentor

        DjangoInstrumentor().instrument(tracer_provider=provider, excluded_urls="metrics,api/health")
    _propagator = TraceContextTextMapPropagator()
    _tracer = provider.get_tracer("sentinai")
    return True


def _format(context: Any = None) -> str | None:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=context)
    return carrier.get(TRACEPARENT)


def _span_context(traceparent: str) -> Any:
    from opentelemetry import trace

    context = trace.get_current_span(_propagator.extract({TRACEPARENT: traceparent})).get_span_context()
    return context if context.is_valid else None


def traceparent_for(exception_id: str) -> str | None:
    """The trace context an event appended now for `exception_id` carries: its agent batch span's, or
    the current span's (an API request). None when tracing is off or no span is current."""
    if _tracer is None:
        return None
    contexts = _batch_contexts.get()
    if contexts is not None and exception_id in contexts:
        return contexts[exception_id]
    return _format()


@contextmanager
def batch_spans(agent: str, tenant_id: str, events: Iterable[Any]) -> Iterator[None]:
    """One span per exception of an agent batch, around its whole handling (a tool's calls included)."""
    if _tracer is None:
        yield
        return
    from opentelemetry import trace
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode

    by_exception: dict[str, list[Any]] = {}
    for event in events:
        by_exception.setdefault(event.exception_id, []).append(event)
    spans, contexts = [], {}
    for exception_id, group in by_exception.items():
        causes = [(e, c) for e in group if (tp := e.metadata.get(TRACEPARENT)) and (c := _span_context(tp))]
        parent = trace.set_span_in_context(trace.NonRecordingSpan(causes[0][1])) if causes else None
        span = _tracer.start_span(
            f"{agent} batch",
            context=parent,
            kind=SpanKind.CONSUMER,
            links=[Link(c, {"sentinai.event_id": e.event_id, "sentinai.event_type": e.event_type}) for e, c in causes],
            attributes={
                "sentinai.agent": agent,
                "sentinai.tenant_id": tenant_id,
                "sentinai.exception_id": exception_id,
                "sentinai.event_types": sorted({e.event_type for e in group}),
                "sentinai.events": len(group),
            },
        )
        spans.append(span)
        contexts[exception_id] = _format(trace.set_span_in_context(span))
    token = _batch_contexts.set(contexts)
    try:
        yield
    except BaseException as exc:
        for span in spans:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:200]))
        raise
    finally:
        _batch_contexts.reset(token)
        for span in spans:
            span.end()
