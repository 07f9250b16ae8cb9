"""OpenAPI pieces shared by the API views (drf-spectacular)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from sentinai.api.problems import CONTENT_TYPE


class ProblemSerializer(serializers.Serializer):
    """RFC 7807 problem details."""

    type = serializers.URLField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    errors = serializers.DictField(required=False, help_text="Validation errors per field.")
    limit = serializers.ChoiceField(choices=["rate", "in_flight"], required=False, help_text="429: the limit hit.")


def problems(*codes: int) -> dict:
    """Responses entries for these error statuses, as application/problem+json (401 always)."""
    return {(code, CONTENT_TYPE): ProblemSerializer for code in sorted({401, *codes})}


TENANT_ID = OpenApiParameter("tenant_id", str, OpenApiParameter.PATH, pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
EXCEPTION_ID = OpenApiParameter("exception_id", str, OpenApiParameter.PATH, pattern=r"^[0-9a-f-]{36}$")
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="A retried request with the same key answers 200 with the exception created the first time.",
)
