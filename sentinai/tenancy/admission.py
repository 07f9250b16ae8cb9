"""Per-tenant admission control: a token bucket (rate, burst) and a cap on in-flight exceptions
(accepted, not yet terminal).

State lives in Redis, updated atomically by one Lua script per request, so every API process and host
shares it; without REDIS_URL (the embedded default, one process) it lives in process memory. A request
refused by either limit persisted nothing; the caller answers 429 with Retry-After and the limit's name.
The in-flight count is raised when exceptions are admitted, lowered when agents close them, and
re-counted from the database by the scheduler (see reconcile_all_tenants), which corrects any drift.

While Redis is unreachable both limits fail open rather than refuse work the platform can do (the
database, not Redis, holds what was accepted), each with a log line per outage (sentinai.dependencies)
and a count in `sentinai_admission_degraded_total{limit}`:
- `rate`: each API process enforces the tenant's rate and burst on its own, in memory (the cluster-wide
  rate is then at most the number of API processes times the tenant's rate);
- `in_flight`: not enforced; the scheduler's reconciliation re-counts open exceptions from the database
  once Redis answers again, so the cap holds again within ADMISSION_RECONCILE_SECONDS.
Releasing in-flight room never fails a request or a batch: a release lost in the outage is corrected by
the same reconciliation.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from django.conf import settings

from sentinai.models import Tenant


@dataclass(frozen=True, slots=True)
class Refusal:
    limit: str  # "rate" or "in_flight"
    retry_after: float
    detail: str


_ADMIT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local rate, burst, cap, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(bucket[1]) or burst
local ts = tonumber(bucket[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local in_flight = tonumber(redis.call('GET', KEYS[2]) or '0')
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('EXPIRE', KEYS[1], 3600)
if in_flight + n > cap then
  return {'in_flight', tostring(in_flight)}
end
if tokens < n then
  return {'rate', tostring((n - tokens) / rate)}
end
redis.call('HSET', KEYS[1], 'tokens', tokens - n)
redis.call('INCRBY', KEYS[2], n)
return {'ok', '0'}
"""


class RedisAdmission:
    def __init__(self, url: str):
        import redis
        from redis.backoff import ConstantBackoff
        from redis.retry import Retry

        # One quick retry (a connection the server closed), not redis-py's default of seconds of
        # backoff: a request must not wait on a Redis that is down (see the fail-open rule above).
        self.client = redis.Redis.from_url(
            url, socket_timeout=2, socket_connect_timeout=1, retry=Retry(ConstantBackoff(0.05), 1)
        )
        self.script = self.client.register_script(_ADMIT)

    @staticmethod
    def _keys(tenant_id: str) -> list[str]:
        return [f"sentinai:bucket:{tenant_id}", f"sentinai:in_flight:{tenant_id}"]

    def admit(self, tenant: Tenant, count: int) -> tuple[str, float]:
        verdict, value = self.script(
            keys=self._keys(tenant.id), args=[tenant.rate_per_second, tenant.burst, tenant.max_in_flight, count]
        )
        return verdict.decode(), float(value)

    def release(self, tenant_id: str, count: int) -> None:
        key = self._keys(tenant_id)[1]
        if self.client.decrby(key, count) < 0:
            self.client.set(key, 0)

    def set_in_flight(self, tenant_id: str, value: int) -> None:
        self.client.set(self._keys(tenant_id)[1], value)

    def in_flight(self, tenant_id: str) -> int:
        return int(self.client.get(self._keys(tenant_id)[1]) or 0)

    def reset(self, tenant_id: str) -> None:
        self.client.delete(*self._keys(tenant_id))


class LocalAdmission:
    """The same algorithm in process memory, for the single-process embedded default."""

    def __init__(self):
        self.lock = threading.Lock()
        self.buckets: dict[str, tuple[float, float]] = {}
        self.flight: dict[str, int] = {}

    def admit(self, tenant: Tenant, count: int) -> tuple[str, float]:
        with self.lock:
            now = time.monotonic()
            tokens, ts = self.buckets.get(tenant.id, (float(tenant.burst), now))
            tokens = min(float(tenant.burst), tokens + max(0.0, now - ts) * tenant.rate_per_second)
            self.buckets[tenant.id] = (tokens, now)
            in_flight = self.flight.get(tenant.id, 0)
            if in_flight + count > tenant.max_in_flight:
                return "in_flight", float(in_flight)
            if tokens < count:
                return "rate", (count - tokens) / tenant.rate_per_second
            self.buckets[tenant.id] = (tokens - count, now)
            self.flight[tenant.id] = in_flight + count
            return "ok", 0.0

    def release(self, tenant_id: str, count: int) -> None:
        with self.lock:
            self.flight[tenant_id] = max(0, self.flight.get(tenant_id, 0) - count)

    def set_in_flight(self, tenant_id: str, value: int) -> None:
        with self.lock:
            self.flight[tenant_id] = value

    def in_flight(self, tenant_id: str) -> int:
        return self.flight.get(tenant_id, 0)

    def reset(self, tenant_id: str) -> None:
        with self.lock:
            self.buckets.pop(tenant_id, None)
            self.flight.pop(tenant_id, None)


@cache
def backend() -> RedisAdmission | LocalAdmission:
    return RedisAdmission(settings.REDIS_URL) if settings.REDIS_URL else LocalAdmission()


_fallback = LocalAdmission()
_retry_redis_at = 0.0
_CONSEQUENCE = "admission control fails open: per-process rate limits, in-flight cap unenforced until it is back"


def _redis_down(exc: BaseException) -> None:
    from sentinai.kernel import dependencies

    dependencies.down("redis", exc, consequence=_CONSEQUENCE)


def _redis_up() -> None:
    from sentinai.kernel import dependencies

    dependencies.up("redis")


def _degraded_verdict(tenant: Tenant, count: int) -> tuple[str, float]:
    from sentinai.kernel import metrics

    metrics.ADMISSION_DEGRADED.labels("rate").inc()
    metrics.ADMISSION_DEGRADED.labels("in_flight").inc()
    verdict, value = _fallback.admit(tenant, count)
    if verdict == "in_flight":  # the local count means nothing: only the rate is enforced here
        verdict, value = "ok", 0.0
    _fallback.set_in_flight(tenant.id, 0)
    return verdict, value


def _backend_admit(tenant: Tenant, count: int) -> tuple[str, float]:
    chosen = backend()
    if isinstance(chosen, LocalAdmission):
        return chosen.admit(tenant, count)
    from sentinai.kernel import dependencies

    global _retry_redis_at
    if time.monotonic() < _retry_redis_at:  # known down: ask again at most once a second
        return _degraded_verdict(tenant, count)
    try:
        verdict = chosen.admit(tenant, count)
    except dependencies.redis_errors() as exc:
        _retry_redis_at = time.monotonic() + 1.0
        _redis_down(exc)
        return _degraded_verdict(tenant, count)
    _redis_up()
    return verdict


def admit(tenant: Tenant, count: int) -> Refusal | None:
    """Take `count` exceptions' worth of tokens and in-flight room, or say which limit refuses."""
    if count <= 0:
        return None
    if count > tenant.burst:
        return Refusal(
            "rate",
            1.0,
            f"{count} exceptions in one request exceed the tenant's burst of {tenant.burst}; send smaller batches",
        )
    verdict, value = _backend_admit(tenant, count)
    if verdict == "ok":
        return None
    if verdict == "in_flight":
        return Refusal(
            "in_flight",
            5.0,
            f"{int(value)} exceptions are in flight; the tenant's cap is {tenant.max_in_flight} (resolve or escalate some first)",
        )
    return Refusal(
        "rate", max(0.001, value), f"over the tenant's rate of {tenant.rate_per_second:g}/s (burst {tenant.burst})"
    )


def retry_after_header(refusal: Refusal) -> str:
    return str(max(1, math.ceil(refusal.retry_after)))


def release(tenant_id: str, count: int) -> None:
    """Exceptions left flight (closed, or admitted but not stored after all)."""
    if count <= 0:
        return
    from sentinai.kernel import dependencies

    try:
        backend().release(tenant_id, count)
    except dependencies.redis_errors() as exc:
        _redis_down(exc)


# Counts of open (in-flight) exceptions per tenant, all tenants at once: registered by the app that
# owns the exception rows (exceptions_app) in its AppConfig.ready().
_open_counts: Callable[[], dict[str, int]] | None = None


def register_open_counts(counter: Callable[[], dict[str, int]]) -> None:
    global _open_counts
    _open_counts = counter


def reconcile_all_tenants() -> dict[str, int]:
    """Re-count open exceptions per tenant from the database and store the counts.

    Runs on the scheduler every ADMISSION_RECONCILE_SECONDS. Exceptions admitted or closed between the
    count and the store are off by one each until the next run (the cap briefly a little loose or
    tight), never longer."""
    if _open_counts is None:
        raise RuntimeError("no open-exception counter registered (is exceptions_app installed?)")
    from sentinai.kernel import dependencies

    counts = _open_counts()
    try:
        for tenant_id in Tenant.objects.values_list("id", flat=True):
            backend().set_in_flight(tenant_id, counts.get(tenant_id, 0))
    except dependencies.redis_errors() as exc:
        _redis_down(exc)
        return counts
    if not isinstance(backend(), LocalAdmission):
        _redis_up()
    return counts
