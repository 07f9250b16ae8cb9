"""Playbook queries: a playbook version, and the playbook view of an exception."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from exceptions_app.serializers import EventSerializer
from playbooks_app import selectors
from playbooks_app.models import RunStatus, StepAction, StepStatus
from sentinai.api.problems import Problem
from sentinai.api.schema import EXCEPTION_ID, TENANT_ID, problems
from sentinai.api.views import ApiView


class PlaybookStepSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    name = serializers.CharField()
    action = serializers.ChoiceField(choices=StepAction.values)
    tool = serializers.CharField(allow_blank=True)
    params = serializers.JSONField()


class PlaybookSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    tenant_id = serializers.CharField()
    pack = serializers.CharField()
    pack_version = serializers.IntegerField()
    name = serializers.CharField()
    version = serializers.IntegerField()
    description = serializers.CharField(allow_blank=True)
    match = serializers.JSONField()
    priority = serializers.IntegerField()
    is_active = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    steps = PlaybookStepSerializer(many=True)


class PlaybookRefSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    version = serializers.IntegerField()


class RunStepSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    name = serializers.CharField()
    action = serializers.ChoiceField(choices=StepAction.values)
    status = serializers.ChoiceField(choices=StepStatus.values)
    tool_execution_id = serializers.UUIDField(allow_null=True)
    output = serializers.JSONField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class ExceptionPlaybookSerializer(serializers.Serializer):
    run_id = serializers.UUIDField(allow_null=True)
    playbook = PlaybookRefSerializer(allow_null=True)
    status = serializers.ChoiceField(choices=[*RunStatus.values, "none"])
    current_position = serializers.IntegerField(required=False)
    started_at = serializers.DateTimeField(required=False)
    finished_at = serializers.DateTimeField(required=False, allow_null=True)
    steps = RunStepSerializer(many=True)
    events = EventSerializer(many=True)


class PlaybookDetailView(ApiView):
    @extend_schema(
        operation_id="playbooks_retrieve",
        summary="A playbook version with its steps",
        responses={200: PlaybookSerializer, **problems(403, 404)},
    )
    def get(self, request, playbook_id):
        with self.scope():
            playbook = selectors.playbook_get(tenant_id=self.readable_tenant, playbook_id=str(playbook_id))
        if playbook is None:
            raise Problem(404, "not-found", "No such playbook.")
        return Response(playbook)


class ExceptionPlaybookView(ApiView):
    @extend_schema(
        operation_id="exceptions_playbook_retrieve",
        summary="The exception's playbook: version, status, step states, related events",
        parameters=[TENANT_ID, EXCEPTION_ID],
        responses={200: ExceptionPlaybookSerializer, **problems(403, 404)},
    )
    def get(self, request, tenant_id: str, exception_id):
        tenant = self.tenant(tenant_id)
        with self.scope(tenant.id):
            view = selectors.exception_playbook_view_json(tenant_id=tenant.id, exception_id=str(exception_id))
        if view is None:
            raise Problem(404, "not-found", "No such exception.")
        if isinstance(view, bytes):
            return HttpResponse(view, content_type="application/json")
        return Response(view)
