"""Query-string validation for list endpoints."""

from __future__ import annotations

from rest_framework import serializers

from sentinai.api.problems import Problem


def parse_query(serializer_class: type[serializers.Serializer], request) -> dict:
    """Validated query parameters. DRF reads a query string like an HTML form, where `?status=` means
    "not given"; for this API an empty value is a mistake and answers 400, like any invalid value."""
    empty = sorted(
        name
        for name, value in request.query_params.items()
        if value == "" and name in serializer_class._declared_fields
    )
    if empty:
        raise Problem(
            400,
            "validation-error",
            "The request is not valid; see errors.",
            errors={name: ["May not be empty."] for name in empty},
        )
    params = serializer_class(data=request.query_params)
    params.is_valid(raise_exception=True)
    return params.validated_data
