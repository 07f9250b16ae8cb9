"""Tools API: request an execution (202), read executions."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from exceptions_app.models import ExceptionRecord
from exceptions_app.serializers import PayloadField, StrictCharField, StrictSerializer
from exceptions_app.services import ExceptionNotFound
from sentinai.api import pagination
from sentinai.api.problems import Problem
from sentinai.api.query import parse_query
from sentinai.api.schema import IDEMPOTENCY_KEY, problems
from sentinai.api.views import ApiView, idempotency_key
from sentinai.models import Scope
from sentinai.packs import pii
from tools_app import selectors, services
from tools_app.models import ExecutionStatus


class ExecuteSerializer(StrictSerializer):
    exception_id = serializers.UUIDField()
    tool = StrictCharField(max_length=100)
    params = PayloadField(required=False, default=dict)


class ExecutionAcceptedSerializer(serializers.Serializer):
    execution_id = serializers.UUIDField()
    exception_id = serializers.UUIDField()
    event_id = serializers.UUIDField()
    status_url = serializers.URLField()


class ExecutionSerializer(serializers.Serializer):
    execution_id = serializers.UUIDField()
    tenant_id = serializers.CharField()
    exception_id = serializers.UUIDField()
    tool = serializers.CharField()
    status = serializers.ChoiceField(choices=ExecutionStatus.values)
    attempts = serializers.IntegerField()
    request = serializers.JSONField()
    response = serializers.JSONField(allow_null=True)
    error = serializers.CharField(allow_blank=True)
    requested_by = serializers.CharField()
    requested_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField()


class ExecutionPageSerializer(serializers.Serializer):
    results = ExecutionSerializer(many=True)
    next = serializers.URLField(allow_null=True)


class ExecutionFilterSerializer(serializers.Serializer):
    exception_id = serializers.UUIDField(required=False)
    tool = serializers.CharField(max_length=100, required=False)
    status = serializers.ChoiceField(choices=ExecutionStatus.values, required=False)
    limit = serializers.IntegerField(min_value=1, max_value=pagination.MAX_LIMIT, required=False)
    cursor = serializers.CharField(
        required=False, min_length=1, help_text="Opaque cursor from the previous page's `next`."
    )


def execution_url(request, execution_id: str) -> str:
    return request.build_absolute_uri(reverse("tool-execution-detail", kwargs={"execution_id": execution_id}))


class ToolExecuteView(ApiView):
    write_scope = Scope.APPROVE

    @extend_schema(
        operation_id="tools_execute",
        summary="Run a tool for an exception (asynchronously); a retry with the same Idempotency-Key runs nothing",
        parameters=[IDEMPOTENCY_KEY],
        request=ExecuteSerializer,
        responses={
            202: ExecutionAcceptedSerializer,
            200: ExecutionAcceptedSerializer,
            **problems(400, 403, 404, 409),
        },
    )
    def post(self, request):
        serializer = ExecuteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        key = idempotency_key(request)
        exception_id = str(data["exception_id"])
        with self.scope():
            owners = ExceptionRecord.objects.filter(id=exception_id)
            if not self.principal.is_operator:
                owners = owners.filter(tenant_id=self.principal.tenant_id)
            owner = owners.values_list("tenant_id", flat=True).first()
        if owner is None:
            raise Problem(404, "not-found", "No such exception.")
        tenant = self.tenant(owner)
        params = pii.redact(data["params"]).value
        try:
            with self.scope(tenant.id):
                execution, event_id, replayed = services.tool_execution_request(
                    tenant_id=tenant.id,
                    exception_id=exception_id,
                    tool_name=data["tool"],
                    params=params,
                    requested_by=self.principal.key_ref,
                    actor=self.principal.actor,
                    idempotency_key=key,
                )
        except services.UnknownTool as exc:
            raise Problem(
                400, "validation-error", "Unknown tool.", errors={"tool": [f"The tenant has no tool {data['tool']!r}."]}
            ) from exc
        except ExceptionNotFound as exc:
            raise Problem(404, "not-found", "No such exception.") from exc
        except LookupError as exc:
            raise Problem(409, "conflict", "A concurrent request with the same Idempotency-Key; retry.") from exc
        url = execution_url(request, str(execution.id))
        body = {
            "execution_id": str(execution.id),
            "exception_id": str(execution.exception_id),
            "event_id": event_id,
            "status_url": url,
        }
        return Response(body, status=200 if replayed else 202, headers={"Location": url})


class ToolExecutionListView(ApiView):
    query_serializer = ExecutionFilterSerializer

    @extend_schema(
        operation_id="tools_executions_list",
        summary="Tool executions, newest first (operators: every tenant's)",
        parameters=[
            ExecutionFilterSerializer,
        ],
        responses={200: ExecutionPageSerializer, **problems(400, 403)},
    )
    def get(self, request):
        filters = parse_query(self.query_serializer, request)
        after = pagination.decode(filters.get("cursor"), selectors.parse_position)
        with self.scope():
            rows, position = selectors.execution_page(
                tenant_id=self.readable_tenant,
                filters=filters,
                after=after,
                limit=filters.get("limit", pagination.DEFAULT_LIMIT),
            )
        return Response({"results": rows, "next": pagination.next_url(request, position)})


class ToolExecutionDetailView(ApiView):
    @extend_schema(
        operation_id="tools_executions_retrieve",
        summary="One tool execution",
        responses={200: ExecutionSerializer, **problems(403, 404)},
    )
    def get(self, request, execution_id):
        with self.scope():
            row = selectors.execution_get(tenant_id=self.readable_tenant, execution_id=str(execution_id))
        if row is None:
            raise Problem(404, "not-found", "No such tool execution.")
        return Response(row)
