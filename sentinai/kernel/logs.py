"""Structured logs: one JSON object per line, carrying the context in which it was written.

Code that works on a tenant, an exception or an event opens `log_context(...)`; every record written
inside it carries those fields (tenant_id, exception_id - the correlation id -, event_id, agent,
attempt). Payloads are never logged: they may hold personal data even after redaction.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pythonjsonlogger.json import JsonFormatter

FIELDS = ("tenant_id", "exception_id", "event_id", "event_type", "agent", "attempt", "request_id")
# The default is never mutated: every change sets a new dict.
_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("sentinai_log_context", default={})  # noqa: B039


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def current() -> dict[str, Any]:
    return dict(_context.get())


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class Formatter(JsonFormatter):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("timestamp", True)
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        super().__init__("%(levelname)s %(name)s %(message)s", *args, **kwargs)

    def add_fields(self, log_record, record, message_dict):
        super().add_fields(log_record, record, message_dict)
        log_record["process"] = record.process


class RequestContextMiddleware:
    """Log context of an API request: a request id, and the tenant and exception in its path."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        import uuid

        request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        with log_context(request_id=request_id[:64]):
            response = self.get_response(request)
        response["X-Request-Id"] = request_id[:64]
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        # Entered after URL resolution: the path's tenant and exception join the context for the view.
        fields = {k: str(v) for k, v in view_kwargs.items() if k in ("tenant_id", "exception_id")}
        if fields:
            _context.set({**_context.get(), **fields})
