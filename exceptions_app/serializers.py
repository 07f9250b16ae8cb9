"""Request validation and response shapes (also the OpenAPI schema) of the exceptions API."""

from __future__ import annotations

import orjson
from django.conf import settings
from rest_framework import serializers

from exceptions_app.models import ExceptionStatus, Severity

TYPE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, so a misspelt field is an error, not silently ignored."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """A string, and only a string: DRF's CharField would turn 123 into "123"."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictRegexField(serializers.RegexField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class PayloadField(serializers.JSONField):
    """A JSON object that can be stored as is: at most SENTINAI["MAX_PAYLOAD_BYTES"] (256 KiB) once
    serialised, no NUL characters (PostgreSQL's jsonb refuses them), integers within 64 bits and
    strings of valid Unicode."""

    def to_internal_value(self, data):
        # Not JSONField's own check (a json.dumps of the value): the request was parsed from JSON,
        # and orjson.dumps below is the stricter test.
        value = data
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        try:
            size = len(orjson.dumps(value))
        except TypeError as exc:  # integers beyond 64 bits, lone surrogates
            raise serializers.ValidationError(f"Must be storable JSON: {exc}.") from exc
        limit = settings.SENTINAI["MAX_PAYLOAD_BYTES"]
        if size > limit:
            raise serializers.ValidationError(f"Must be at most {limit // 1024} KiB.")
        if _has_nul(value):
            raise serializers.ValidationError("Must not contain NUL characters.")
        return value


class IngestSerializer(StrictSerializer):
    source_system = StrictCharField(max_length=100)
    source_ref = StrictCharField(max_length=200, required=False, allow_null=True)
    exception_type = StrictRegexField(TYPE_PATTERN, required=False, allow_null=True)
    occurred_at = serializers.DateTimeField(required=False, allow_null=True)
    payload = PayloadField()


class ManualSerializer(StrictSerializer):
    source_system = StrictCharField(max_length=100, default="manual")
    source_ref = StrictCharField(max_length=200, required=False, allow_null=True)
    exception_type = StrictRegexField(TYPE_PATTERN)
    severity = serializers.ChoiceField(choices=Severity.values, required=False, allow_null=True)
    summary = StrictCharField(max_length=500, required=False, allow_blank=True, default="")
    payload = PayloadField(required=False, default=dict)


class ParsedJSONField(serializers.JSONField):
    """Any value of a parsed JSON body, taken as it is: each item is validated on its own later, so
    one bad item never rejects the batch (and JSONField's json.dumps of it would prove nothing the
    parser has not)."""

    def to_internal_value(self, data):
        return data


class BatchSerializer(StrictSerializer):
    items = serializers.ListField(child=ParsedJSONField(), min_length=1, max_length=1000)


class ApprovalSerializer(StrictSerializer):
    decision = serializers.ChoiceField(choices=["approve", "reject"])
    comment = StrictCharField(max_length=2000, required=False, allow_blank=True, default="")


class FeedbackSerializer(StrictSerializer):
    rating = serializers.IntegerField(min_value=1, max_value=5, required=False, allow_null=True)
    outcome = StrictCharField(max_length=32, required=False, allow_blank=True, default="")
    comment = StrictCharField(max_length=2000, required=False, allow_blank=True, default="")


class RecalculateSerializer(StrictSerializer):
    reason = StrictCharField(max_length=500, required=False, allow_blank=True, default="")


# --- responses ---------------------------------------------------------------------------------


class AcceptedSerializer(serializers.Serializer):
    exception_id = serializers.UUIDField()
    event_id = serializers.UUIDField(allow_null=True)
    status_url = serializers.URLField()
    deduplicated = serializers.BooleanField()


class CommandAcceptedSerializer(serializers.Serializer):
    exception_id = serializers.UUIDField()
    event_id = serializers.UUIDField()
    status_url = serializers.URLField()


class BatchResultSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["accepted", "deduplicated", "rejected"])
    exception_id = serializers.UUIDField(required=False)
    event_id = serializers.UUIDField(required=False, allow_null=True)
    status_url = serializers.URLField(required=False)
    errors = serializers.DictField(required=False)


class BatchResponseSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    deduplicated = serializers.IntegerField()
    rejected = serializers.IntegerField()
    results = BatchResultSerializer(many=True)


class EventSerializer(serializers.Serializer):
    event_id = serializers.UUIDField()
    event_type = serializers.CharField()
    sequence = serializers.IntegerField()
    causation_id = serializers.UUIDField(allow_null=True)
    producer = serializers.CharField()
    recorded_at = serializers.DateTimeField()
    payload = serializers.JSONField()


class ExceptionSerializer(serializers.Serializer):
    exception_id = serializers.UUIDField()
    tenant_id = serializers.CharField()
    source_system = serializers.CharField()
    source_ref = serializers.CharField(allow_null=True)
    exception_type = serializers.CharField(allow_null=True)
    severity = serializers.ChoiceField(choices=Severity.values, allow_null=True)
    priority = serializers.IntegerField(allow_null=True)
    status = serializers.ChoiceField(choices=ExceptionStatus.values)
    manual = serializers.BooleanField()
    payload = serializers.JSONField()
    normalized = serializers.JSONField()
    invalid_reasons = serializers.ListField(child=serializers.CharField())
    occurred_at = serializers.DateTimeField(allow_null=True)
    sla_due_at = serializers.DateTimeField(allow_null=True)
    closed_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ExceptionDetailSerializer(ExceptionSerializer):
    events = EventSerializer(many=True)


class CauseSerializer(serializers.Serializer):
    event_id = serializers.UUIDField()
    event_type = serializers.CharField()
    sequence = serializers.IntegerField()


class SpanSerializer(serializers.Serializer):
    event_id = serializers.UUIDField()
    event_type = serializers.CharField()
    sequence = serializers.IntegerField()
    causation_id = serializers.UUIDField(allow_null=True)
    producer = serializers.CharField()
    recorded_at = serializers.DateTimeField()
    actor = serializers.CharField(allow_null=True, help_text="Who took a human action: the API key's name.")
    caused_by = CauseSerializer(allow_null=True)
    after_cause_ms = serializers.FloatField(allow_null=True, help_text="Recorded this long after its cause.")


class AgentTimingSerializer(serializers.Serializer):
    events = serializers.IntegerField()
    total_ms = serializers.FloatField()
    max_ms = serializers.FloatField()


class TraceSerializer(serializers.Serializer):
    exception_id = serializers.UUIDField()
    duration_ms = serializers.FloatField()
    agents = serializers.DictField(child=AgentTimingSerializer())
    spans = SpanSerializer(many=True)


class ExceptionPageSerializer(serializers.Serializer):
    results = ExceptionSerializer(many=True)
    next = serializers.URLField(allow_null=True)
