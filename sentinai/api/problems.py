"""Errors as RFC 7807 problem details: application/problem+json with type, title, status, detail and,
for validation, `errors` per field."""

from __future__ import annotations

import logging

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)

PROBLEM_BASE = "https://sentinai.dev/problems/"
CONTENT_TYPE = "application/problem+json"


class Problem(exceptions.APIException):
    """An API error with its own problem type, e.g. Problem(409, "not-awaiting-approval", ...)."""

    def __init__(self, status_code: int, kind: str, detail: str, title: str | None = None, **extra):
        self.status_code = status_code
        self.kind = kind
        self.title = title
        self.extra = extra
        super().__init__(detail)


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

_KINDS = {
    exceptions.ValidationError: "validation-error",
    exceptions.ParseError: "malformed-request",
    exceptions.AuthenticationFailed: "unauthenticated",
    exceptions.NotAuthenticated: "unauthenticated",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not-found",
    exceptions.MethodNotAllowed: "method-not-allowed",
    exceptions.NotAcceptable: "not-acceptable",
    exceptions.UnsupportedMediaType: "unsupported-media-type",
    exceptions.Throttled: "rate-limited",
}


def problem_body(status_code: int, kind: str, detail: str, title: str | None = None, **extra) -> dict:
    body = {
        "type": PROBLEM_BASE + kind,
        "title": title or _TITLES.get(status_code, "Error"),
        "status": status_code,
        "detail": detail,
    }
    body.update(extra)
    return body


def problem_response(status_code: int, kind: str, detail: str, headers: dict | None = None, **extra) -> Response:
    response = Response(problem_body(status_code, kind, detail, **extra), status=status_code, headers=headers)
    response.content_type = CONTENT_TYPE
    return response


# What a client is told to wait before retrying a request refused by an outage of a dependency.
OUTAGE_RETRY_AFTER_SECONDS = 5


def outage_response(exc: BaseException) -> Response | None:
    """503 + Retry-After when `exc` says the database is unreachable (never a 500: the request is
    sound, the platform will answer it again in seconds)."""
    from sentinai.kernel import dependencies

    if not isinstance(exc, dependencies.database_errors()):
        return None
    if dependencies.is_database_outage(exc):
        dependencies.down("database", exc, consequence="the API answers 503 with Retry-After")
    else:  # a deadlock or a timeout of this request's statements: worth a retry too, and worth a line
        logger.warning("database error, answering 503: %s", exc)
    return problem_response(
        503,
        "database-unavailable",
        "The database is unreachable right now; nothing was stored. Retry after the delay given.",
        headers={"Retry-After": str(OUTAGE_RETRY_AFTER_SECONDS)},
    )


def exception_handler(exc, context):
    """DRF exception handler: every API error is a problem document."""
    outage = outage_response(exc)
    if outage is not None:
        return outage
    if isinstance(exc, RequestDataTooBig):
        return problem_response(413, "payload-too-large", "The request body is larger than this endpoint accepts.")
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # an unexpected error: Django's 500 handler answers (also as a problem)
    if isinstance(exc, Problem):
        body = problem_body(exc.status_code, exc.kind, str(exc.detail), exc.title, **exc.extra)
    elif isinstance(exc, exceptions.ValidationError):
        errors = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        body = problem_body(400, "validation-error", "The request is not valid; see errors.", errors=errors)
    else:
        kind = next((k for cls, k in _KINDS.items() if isinstance(exc, cls)), "error")
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        body = problem_body(response.status_code, kind, detail)
    response.data = body
    response.content_type = CONTENT_TYPE
    return response


def api_not_found(request, exception=None):
    return JsonResponse(problem_body(404, "not-found", "No such resource."), status=404, content_type=CONTENT_TYPE)


def database_outage() -> bool:
    """Whether the exception being handled (Django's 500 handler) says the database is unreachable."""
    import sys

    from sentinai.kernel import dependencies

    exc = sys.exc_info()[1]
    return exc is not None and isinstance(exc, dependencies.database_errors())


def api_server_error(request):
    import sys

    from sentinai.kernel import dependencies

    exc = sys.exc_info()[1]
    if database_outage():
        # Raised outside a DRF view (middleware, authentication of the admin...): still an outage.
        dependencies.down("database", exc, consequence="the API answers 503 with Retry-After")
        return JsonResponse(
            problem_body(
                503, "database-unavailable", "The database is unreachable right now. Retry after the delay given."
            ),
            status=503,
            content_type=CONTENT_TYPE,
            headers={"Retry-After": str(OUTAGE_RETRY_AFTER_SECONDS)},
        )
    return JsonResponse(
        problem_body(500, "internal-error", "The server failed to handle the request; it has been logged."),
        status=500,
        content_type=CONTENT_TYPE,
    )


HTTP_429 = status.HTTP_429_TOO_MANY_REQUESTS
