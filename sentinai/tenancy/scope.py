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
    connection.ensure_connection()
    if _begin_with_scope(connection, value):
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, %s, true)", [SCOPE_SETTING, value])


def _begin_with_scope(connection, value: str) -> bool:
    """When the scope opens the transaction: BEGIN and the setting as one simple query, one round trip.
    psycopg would otherwise send BEGIN on its own and wait for it before the setting (even in a
    pipeline, where it syncs after BEGIN), and every transaction of the platform opens with a scope.
    libpq's transaction status then says INTRANS, so psycopg sends no BEGIN of its own and commits or
    rolls back as usual. Returns False when the transaction is already open (the setting is then a
    statement of its own)."""
    raw = connection.connection
    if raw.autocommit or raw.info.transaction_status != _pq.TransactionStatus.IDLE or raw.pgconn.pipeline_status:
        return False
    literal = _pq.Escaping(raw.pgconn).escape_literal(value.encode())
    query = (
        raw._get_tx_start_command() + b"; SELECT set_config('" + SCOPE_SETTING.encode() + b"', " + literal + b", true)"
    )
    with connection.wrap_database_errors, raw.lock:
        raw.pgconn.send_query(query)
        results = raw.wait(_generators.execute(raw.pgconn))
        for result in results:
            if result.status not in (_pq.ExecStatus.COMMAND_OK, _pq.ExecStatus.TUPLES_OK):
                raise _errors.error_from_result(result, encoding=raw.info.encoding)
    if connection.queries_logged:
        connection.queries_log.append({"sql": query.decode(), "time": "0.000"})
    return True


try:  # psycopg is there wherever PostgreSQL is used
    from psycopg import errors as _errors
    from psycopg import generators as _generators
    from psycopg import pq as _pq
except ImportError:  # pragma: no cover - the embedded SQLite default without psycopg
    _errors = _generators = _pq = None


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


class CrossTenantRefused(PermissionError):
    """The process's database role is not the platform role, so it cannot see across tenants."""


def may_cross_tenants(using: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether this connection's role sees every tenant in the all-tenants scope (PostgreSQL: a
    member of settings.DB_PLATFORM_ROLE; the tenant policies ask the same). Asked once per connection."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return True
    known = connection.__dict__.get("_sentinai_may_cross")
    if known is None:
        from django.conf import settings

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT current_user, EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s "
                "AND pg_has_role(current_user, oid, 'USAGE'))",
                [settings.DB_PLATFORM_ROLE],
            )
            user, allowed = cursor.fetchone()
        known = connection.__dict__["_sentinai_may_cross"] = (bool(allowed), user)
    return known[0]


@contextmanager
def all_tenants_scope(using: str = DEFAULT_DB_ALIAS):
    """A transaction that sees every tenant's rows: for operators and platform processes only. On
    PostgreSQL only the platform role may open it (for any other role the database would show no
    rows); any other role gets CrossTenantRefused here rather than a silently empty answer."""
    if not may_cross_tenants(using):
        from django.conf import settings

        user = connections[using].__dict__["_sentinai_may_cross"][1]
        raise CrossTenantRefused(
            f"database role {user!r} may not work across tenants: cross-tenant work runs in the platform "
            f"processes, which connect as {settings.DB_PLATFORM_ROLE!r} (docs/security.md)"
        )
    with _scope(ALL_TENANTS, using):
        yield


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
