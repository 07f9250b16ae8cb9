"""Tenant scope: the per-transaction setting that PostgreSQL row-level security keys on.

Every tenant table has a policy `tenant_id = current_setting('sentinai.tenant_id')`. A transaction
that sets no scope sees no tenant rows at all. Code that must cross tenants (the scheduler, the
relay, operators, admin) opens `all_tenants_scope()` and says so in its name.
"""

from __future__ import annotations

from contextlib import contextmanager

from django.db import DEFAULT_DB_ALIAS, connections, transaction

SCOPE_SETTING = "sentinai.tenant_id"
ALL_TENANTS = "*"


def _apply(using: str, value: str) -> None:
    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, %s, true)", [SCOPE_SETTING, value])


@contextmanager
def _scope(value: str, using: str):
    connection = connections[using]
    with transaction.atomic(using=using):
        stack = connection.__dict__.setdefault("_sentinai_scopes", [])
        stack.append(value)
        _apply(using, value)
        try:
            yield
        finally:
            stack.pop()
            # A nested scope must not leak into the enclosing one (RELEASE keeps the setting).
            if stack and connection.in_atomic_block and not connection.needs_rollback:
                _apply(using, stack[-1])


def tenant_scope(tenant_id: str, using: str = DEFAULT_DB_ALIAS):
    """A transaction that sees and writes only `tenant_id`'s rows."""
    if not tenant_id or tenant_id == ALL_TENANTS:
        raise ValueError("tenant_scope needs a concrete tenant id")
    return _scope(tenant_id, using)


def all_tenants_scope(using: str = DEFAULT_DB_ALIAS):
    """A transaction that sees every tenant's rows: for operators and platform processes only."""
    return _scope(ALL_TENANTS, using)


def current_scope(using: str = DEFAULT_DB_ALIAS) -> str | None:
    stack = connections[using].__dict__.get("_sentinai_scopes") or []
    return stack[-1] if stack else None


class AdminScopeMiddleware:
    """Django admin is an operator tool: its requests run in one all-tenants transaction."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/admin/"):
            with all_tenants_scope():
                return self.get_response(request)
        return self.get_response(request)
