"""Command and query APIs of exceptions. Commands validate, persist events (outbox) and answer 202;
queries read projections."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from exceptions_app import selectors, services
from exceptions_app.models import ExceptionStatus, Severity
from exceptions_app.serializers import (
    AcceptedSerializer,
    ApprovalSerializer,
    BatchResponseSerializer,
    BatchSerializer,
    CommandAcceptedSerializer,
    ExceptionDetailSerializer,
    ExceptionPageSerializer,
    FeedbackSerializer,
    IngestSerializer,
    ManualSerializer,
    RecalculateSerializer,
    TraceSerializer,
)
from sentinai.api import pagination
from sentinai.api.problems import Problem, problem_response
from sentinai.api.query import parse_query
from sentinai.api.schema import EXCEPTION_ID, IDEMPOTENCY_KEY, TENANT_ID, problems
from sentinai.api.views import ApiView, idempotency_key
from sentinai.kernel import metrics
from sentinai.models import Scope
from sentinai.packs import pii
from sentinai.packs.rules import pii_rules_for
from sentinai.tenancy import admission


def status_url(request, tenant_id: str, exception_id: str) -> str:
    return request.build_absolute_uri(
        reverse("exception-detail", kwargs={"tenant_id": tenant_id, "exception_id": exception_id})
    )


_PLACEHOLDER_ID = "00000000-0000-0000-0000-000000000000"


def status_urls(request, tenant_id: str):
    """`status_url` for many exceptions of one tenant: the URL is reversed once, then only the id
    changes (a reverse per item was ~5 % of a 100-item batch in a profile)."""
    before, after = status_url(request, tenant_id, _PLACEHOLDER_ID).split(_PLACEHOLDER_ID)
    return lambda exception_id: f"{before}{exception_id}{after}"


def _refused(tenant, refusal: admission.Refusal) -> Response:
    metrics.REFUSED.labels(metrics.tenant_label(tenant.id), refusal.limit).inc()
    return problem_response(
        429,
        "rate-limited",
        refusal.detail,
        headers={"Retry-After": admission.retry_after_header(refusal)},
        limit=refusal.limit,
    )


def _ingest(tenant, items: list[services.NewException]) -> list[services.Ingested]:
    try:
        return services.exceptions_ingest_admitted(tenant_id=tenant.id, items=items)
    except LookupError as exc:
        raise Problem(409, "conflict", "A concurrent request for the same exception failed; retry.") from exc


class FilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=ExceptionStatus.values, required=False)
    severity = serializers.ChoiceField(choices=Severity.values, required=False)
    exception_type = serializers.CharField(max_length=100, required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
    limit = serializers.IntegerField(min_value=1, max_value=pagination.MAX_LIMIT, required=False)
    cursor = serializers.CharField(
        required=False, min_length=1, help_text="Opaque cursor from the previous page's `next`."
    )


class ExceptionCollectionView(ApiView):
    query_serializer = FilterSerializer
    write_scope = Scope.INGEST

    @extend_schema(
        operation_id="exceptions_ingest",
        summary="Report an exception",
        parameters=[TENANT_ID, IDEMPOTENCY_KEY],
        request=IngestSerializer,
        responses={202: AcceptedSerializer, 200: AcceptedSerializer, **problems(400, 403, 404, 413, 429)},
    )
    def post(self, request, tenant_id: str):
        tenant = self.tenant(tenant_id)
        serializer = IngestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        item = services.exception_from_report(
            serializer.validated_data, pii_rules_for(tenant), idempotency_key=idempotency_key(request)
        )
        refusal = admission.admit(tenant, 1)
        if refusal:
            return _refused(tenant, refusal)
        (result,) = _ingest(tenant, [item])
        url = status_url(request, tenant.id, result.exception_id)
        body = {
            "exception_id": result.exception_id,
            "event_id": result.event_id,
            "status_url": url,
            "deduplicated": result.deduplicated,
        }
        return Response(body, status=200 if result.deduplicated else 202, headers={"Location": url})

    @extend_schema(
        operation_id="exceptions_list",
        summary="List exceptions, newest first",
        parameters=[
            TENANT_ID,
            FilterSerializer,
        ],
        responses={200: ExceptionPageSerializer, **problems(400, 403, 404)},
    )
    def get(self, request, tenant_id: str):
        tenant = self.tenant(tenant_id)
        filters = parse_query(self.query_serializer, request)
        after = pagination.decode(filters.get("cursor"), selectors.parse_position)
        with self.scope(tenant.id):
            rows, position = selectors.exception_page_json(
                tenant_id=tenant.id, filters=filters, after=after, limit=filters.get("limit", pagination.DEFAULT_LIMIT)
            )
        return Response({"results": rows, "next": pagination.next_url(request, position)})


class ExceptionBatchView(ApiView):
    write_scope = Scope.INGEST

    @extend_schema(
        operation_id="exceptions_ingest_batch",
        summary="Report up to 1,000 exceptions; bad items never reject good ones",
        parameters=[TENANT_ID],
        request=BatchSerializer,
        responses={202: BatchResponseSerializer, **problems(400, 403, 404, 413, 429)},
    )
    def post(self, request, tenant_id: str):
        tenant = self.tenant(tenant_id)
        batch = BatchSerializer(data=request.data)
        batch.is_valid(raise_exception=True)
        rules = pii_rules_for(tenant)
        results: list[dict[str, Any]] = []
        valid: list[tuple[int, services.NewException]] = []
        # One serializer validates every item: a serializer's first use deep-copies its declared
        # fields, which was half of a 100-item batch's validation time (docs/performance.md).
        validator = IngestSerializer()
        for index, raw in enumerate(batch.validated_data["items"]):
            if not isinstance(raw, dict):
                results.append(
                    {"index": index, "status": "rejected", "errors": {"non_field_errors": ["Must be an object."]}}
                )
                continue
            try:
                data = validator.run_validation(raw)
            except serializers.ValidationError as exc:
                results.append({"index": index, "status": "rejected", "errors": exc.detail})
                continue
            valid.append((index, services.exception_from_report(data, rules)))
            results.append({"index": index})
        if valid:
            refusal = admission.admit(tenant, len(valid))
            if refusal:
                return _refused(tenant, refusal)
            url_of = status_urls(request, tenant.id)
            for (index, _), outcome in zip(valid, _ingest(tenant, [item for _, item in valid]), strict=True):
                results[index].update(
                    {
                        "status": "deduplicated" if outcome.deduplicated else "accepted",
                        "exception_id": outcome.exception_id,
                        "event_id": outcome.event_id,
                        "status_url": url_of(outcome.exception_id),
                    }
                )
        counts = {k: sum(1 for r in results if r["status"] == k) for k in ("accepted", "deduplicated", "rejected")}
        return Response({**counts, "results": results}, status=202)


class ManualExceptionView(ApiView):
    write_scope = Scope.INGEST

    @extend_schema(
        operation_id="exceptions_create_manual",
        summary="Raise an exception by hand",
        parameters=[TENANT_ID],
        request=ManualSerializer,
        responses={202: AcceptedSerializer, 200: AcceptedSerializer, **problems(400, 403, 404, 413, 429)},
    )
    def post(self, request, tenant_id: str):
        tenant = self.tenant(tenant_id)
        serializer = ManualSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        payload = pii.redact(data["payload"], pii_rules_for(tenant)).value
        summary = pii.redact_text(data["summary"], pii_rules_for(tenant))[0]
        item = services.NewException(
            source_system=data["source_system"],
            source_ref=data.get("source_ref"),
            exception_type=data["exception_type"],
            severity=data.get("severity"),
            payload=payload,
            manual=True,
            event_type="ManualExceptionCreated",
            event_payload={
                "source_system": data["source_system"],
                "source_ref": data.get("source_ref"),
                "exception_type": data["exception_type"],
                "severity": data.get("severity"),
                "summary": summary,
                "created_by": self.principal.key_ref,
                "actor": self.principal.actor,
                "payload": payload,
            },
        )
        refusal = admission.admit(tenant, 1)
        if refusal:
            return _refused(tenant, refusal)
        (result,) = _ingest(tenant, [item])
        url = status_url(request, tenant.id, result.exception_id)
        body = {
            "exception_id": result.exception_id,
            "event_id": result.event_id,
            "status_url": url,
            "deduplicated": result.deduplicated,
        }
        return Response(body, status=200 if result.deduplicated else 202, headers={"Location": url})


class ExceptionDetailView(ApiView):
    @extend_schema(
        operation_id="exceptions_retrieve",
        summary="An exception with its event chain",
        parameters=[TENANT_ID, EXCEPTION_ID],
        responses={200: ExceptionDetailSerializer, **problems(403, 404)},
    )
    def get(self, request, tenant_id: str, exception_id):
        tenant = self.tenant(tenant_id)
        document = selectors.exception_detail_json(tenant_id=tenant.id, exception_id=str(exception_id))
        if document is None:
            raise Problem(404, "not-found", "No such exception.")
        return HttpResponse(document, content_type="application/json")


class ExceptionTraceView(ApiView):
    @extend_schema(
        operation_id="exceptions_trace",
        summary="The exception's trace: its event chain with causation links and per-agent timings",
        parameters=[TENANT_ID, EXCEPTION_ID],
        responses={200: TraceSerializer, **problems(403, 404)},
    )
    def get(self, request, tenant_id: str, exception_id):
        tenant = self.tenant(tenant_id)
        with self.scope(tenant.id):
            if selectors.exception_get(tenant_id=tenant.id, exception_id=str(exception_id)) is None:
                raise Problem(404, "not-found", "No such exception.")
            trace = selectors.exception_trace(tenant_id=tenant.id, exception_id=str(exception_id))
        return Response(trace)


class _ExceptionCommand(ApiView):
    """POST on one exception: validate, append one event, answer 202 with where to watch it."""

    serializer_class: type[serializers.Serializer]
    write_scope = Scope.APPROVE

    def run(self, tenant_id: str, exception_id: str, data: dict):
        raise NotImplementedError

    def post(self, request, tenant_id: str, exception_id):
        tenant = self.tenant(tenant_id)
        serializer = self.serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            with self.scope(tenant.id):
                envelope = self.run(tenant.id, str(exception_id), serializer.validated_data)
        except services.ExceptionNotFound as exc:
            raise Problem(404, "not-found", "No such exception.") from exc
        url = status_url(request, tenant.id, str(exception_id))
        body = {"exception_id": str(exception_id), "event_id": envelope.event_id, "status_url": url}
        return Response(body, status=202, headers={"Location": url})


_COMMAND_RESPONSES = {202: CommandAcceptedSerializer, **problems(400, 403, 404)}


class RecalculatePlaybookView(_ExceptionCommand):
    serializer_class = RecalculateSerializer

    @extend_schema(
        operation_id="exceptions_playbook_recalculate",
        summary="Match the exception's playbook again",
        parameters=[TENANT_ID, EXCEPTION_ID],
        request=RecalculateSerializer,
        responses=_COMMAND_RESPONSES,
    )
    def post(self, request, tenant_id: str, exception_id):
        return super().post(request, tenant_id, exception_id)

    def run(self, tenant_id, exception_id, data):
        return services.exception_request_recalculation(
            tenant_id=tenant_id,
            exception_id=exception_id,
            requested_by=self.principal.key_ref,
            actor=self.principal.actor,
            reason=data["reason"],
        )


class ApproveView(_ExceptionCommand):
    serializer_class = ApprovalSerializer

    @extend_schema(
        operation_id="exceptions_approve",
        summary="Approve or reject the step awaiting a human decision",
        parameters=[TENANT_ID, EXCEPTION_ID],
        request=ApprovalSerializer,
        responses={**_COMMAND_RESPONSES, **problems(409)},
    )
    def post(self, request, tenant_id: str, exception_id):
        try:
            return super().post(request, tenant_id, exception_id)
        except services.NothingAwaitsApproval as exc:
            raise Problem(409, "not-awaiting-approval", "Nothing of this exception awaits approval.") from exc

    def run(self, tenant_id, exception_id, data):
        return services.exception_decide_approval(
            tenant_id=tenant_id,
            exception_id=exception_id,
            decision=data["decision"],
            comment=pii.redact_text(data["comment"])[0],
            decided_by=self.principal.key_ref,
            actor=self.principal.actor,
        )


class FeedbackView(_ExceptionCommand):
    serializer_class = FeedbackSerializer

    @extend_schema(
        operation_id="exceptions_feedback",
        summary="Give feedback on how an exception was handled",
        parameters=[TENANT_ID, EXCEPTION_ID],
        request=FeedbackSerializer,
        responses=_COMMAND_RESPONSES,
    )
    def post(self, request, tenant_id: str, exception_id):
        return super().post(request, tenant_id, exception_id)

    def run(self, tenant_id, exception_id, data):
        return services.exception_submit_feedback(
            tenant_id=tenant_id,
            exception_id=exception_id,
            rating=data.get("rating"),
            outcome=data["outcome"],
            comment=pii.redact_text(data["comment"])[0],
            submitted_by=self.principal.key_ref,
            actor=self.principal.actor,
        )
