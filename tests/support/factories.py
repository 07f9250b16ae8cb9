"""Test data through the platform's own services."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from exceptions_app.models import ExceptionRecord
from sentinai.eventstore import store
from sentinai.eventstore.events import CATALOGUE, Envelope
from sentinai.models import Tenant
from sentinai.tenancy.scope import tenant_scope


def make_tenant(tenant_id: str = "acme", domain_pack: str = "finance", **fields) -> Tenant:
    tenant, _ = Tenant.objects.update_or_create(
        id=tenant_id, defaults={"name": tenant_id, "domain_pack": domain_pack, **fields}
    )
    return tenant


def make_exceptions(tenant_id: str, count: int, *, source: str = "test") -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(count)]
    with tenant_scope(tenant_id):
        ExceptionRecord.objects.bulk_create(
            [ExceptionRecord(id=i, tenant_id=tenant_id, source_system=source, payload={}) for i in ids]
        )
        store.open_streams(tenant_id, ids)
    return ids


def append(tenant_id: str, exception_id: str, event_type: str, payload: dict, producer: str | None = None) -> Envelope:
    """Append one event as its first allowed producer (the catalogue's) unless told otherwise."""
    producer = producer or CATALOGUE[event_type].producers[0]
    with tenant_scope(tenant_id):
        (envelope,) = store.append(
            tenant_id=tenant_id,
            events=[store.NewEvent(exception_id=exception_id, event_type=event_type, payload=payload)],
            producer=producer,
        )
    return envelope


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.1, message: str = ""):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}; last value {last!r}")
