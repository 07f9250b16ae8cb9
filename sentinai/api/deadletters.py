"""Dead letters over the API: a tenant sees its own, an operator sees all and may replay."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from sentinai.api import pagination
from sentinai.api.problems import Problem
from sentinai.api.query import parse_query
from sentinai.api.schema import problems
from sentinai.api.views import ApiView
from sentinai.models import DeadLetter, Scope
from sentinai.ops import deadletters

FIELDS = (
    "id",
    "tenant_id",
    "source",
    "consumer",
    "status",
    "event_id",
    "exception_id",
    "event_ids",
    "error",
    "attempts",
    "replay_count",
    "replayed_by",
    "created_at",
    "updated_at",
)


class DeadLetterSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    tenant_id = serializers.CharField(allow_null=True)
    source = serializers.ChoiceField(choices=DeadLetter.Source.values)
    agent = serializers.CharField()
    status = serializers.ChoiceField(choices=DeadLetter.Status.values)
    event_id = serializers.UUIDField(allow_null=True)
    exception_id = serializers.UUIDField(allow_null=True)
    event_ids = serializers.ListField(child=serializers.CharField())
    error = serializers.CharField(allow_blank=True)
    attempts = serializers.IntegerField()
    replay_count = serializers.IntegerField()
    replayed_by = serializers.CharField(allow_blank=True, help_text="Who replayed it last (an API key's name).")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class DeadLetterPageSerializer(serializers.Serializer):
    results = DeadLetterSerializer(many=True)
    next = serializers.URLField(allow_null=True)


class DeadLetterFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=DeadLetter.Status.values, required=False)
    agent = serializers.CharField(max_length=32, required=False)
    limit = serializers.IntegerField(min_value=1, max_value=pagination.MAX_LIMIT, required=False)
    cursor = serializers.CharField(
        required=False, min_length=1, help_text="Opaque cursor from the previous page's `next`."
    )


class ReplayedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    replay_count = serializers.IntegerField()


def _after_id(position: dict) -> int:
    if not isinstance(position["i"], int):
        raise TypeError("a dead-letter cursor holds an integer id")
    return position["i"]


def _shape(row: dict) -> dict:
    row = dict(row)
    row["agent"] = row.pop("consumer")
    return row


class DeadLetterListView(ApiView):
    query_serializer = DeadLetterFilterSerializer

    @extend_schema(
        operation_id="dead_letters_list",
        summary="Dead letters, newest first (a tenant's own; operators: all)",
        parameters=[
            DeadLetterFilterSerializer,
        ],
        responses={200: DeadLetterPageSerializer, **problems(400, 403)},
    )
    def get(self, request):
        filters = parse_query(self.query_serializer, request)
        limit = filters.get("limit", pagination.DEFAULT_LIMIT)
        with self.scope():
            qs = DeadLetter.objects.all()
            if self.readable_tenant is not None:
                qs = qs.filter(tenant_id=self.readable_tenant)
            if filters.get("status"):
                qs = qs.filter(status=filters["status"])
            if filters.get("agent"):
                qs = qs.filter(consumer=filters["agent"])
            after = pagination.decode(filters.get("cursor"), _after_id)
            if after is not None:
                qs = qs.filter(id__lt=after)
            rows = list(qs.order_by("-id").values(*FIELDS)[: limit + 1])
        position = None
        if len(rows) > limit:
            rows = rows[:limit]
            position = {"i": rows[-1]["id"]}
        return Response({"results": [_shape(r) for r in rows], "next": pagination.next_url(request, position)})


class DeadLetterReplayView(ApiView):
    write_scope = Scope.OPERATE

    @extend_schema(
        operation_id="dead_letters_replay",
        summary="Replay a dead letter: its events run again from its agent (operator keys)",
        request=None,
        responses={202: ReplayedSerializer, **problems(403, 404, 409)},
    )
    def post(self, request, dead_letter_id: int):
        with self.scope():
            letter = DeadLetter.objects.filter(pk=dead_letter_id).first()
        if letter is None:
            raise Problem(404, "not-found", "No such dead letter.")
        if letter.status == DeadLetter.Status.DISCARDED:
            raise Problem(409, "discarded", "The dead letter was discarded.")
        try:
            deadletters.replay([letter], actor=self.principal.actor)
        except deadletters.NotReplayable as exc:
            raise Problem(409, "not-replayable", str(exc)) from exc
        return Response(
            {"id": letter.pk, "status": DeadLetter.Status.REPLAYED, "replay_count": letter.replay_count + 1}, status=202
        )
