"""GET /api/health: which database, broker and cache are in use, and whether each answers."""

from __future__ import annotations

import time

from django.core.cache import caches
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from config.celery import app as celery_app


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        detail = check()
        ok = True
        error = None
    except Exception as exc:  # a health check reports every failure, whatever its kind
        detail, ok, error = None, False, f"{type(exc).__name__}: {exc}"
    result = {"ok": ok, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
    if detail:
        result.update(detail)
    if error:
        result["error"] = error[:300]
    return result


def check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {}


def check_broker() -> dict:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return {}


def check_cache() -> dict:
    cache = caches["default"]
    cache.set("sentinai:health", "1", 5)
    if cache.get("sentinai:health") != "1":
        raise RuntimeError("cache did not return the value it was given")
    return {}


def broker_transport() -> str:
    return celery_app.connection_for_write().transport_cls


def health_report() -> dict:
    database = {"engine": connection.vendor, **_timed(check_database)}
    broker = {"transport": broker_transport(), **_timed(check_broker)}
    cache_backend = type(caches["default"]).__name__
    cache_report = {"backend": cache_backend, **_timed(check_cache)}
    ok = database["ok"] and broker["ok"] and cache_report["ok"]
    return {"status": "ok" if ok else "unavailable", "database": database, "broker": broker, "cache": cache_report}


@require_GET
def health(request):
    report = health_report()
    return JsonResponse(report, status=200 if report["status"] == "ok" else 503)
