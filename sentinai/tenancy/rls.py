"""Row-level security DDL (PostgreSQL only) and the application role's grants."""

from __future__ import annotations

from django.db import migrations

from sentinai.tenancy.scope import ALL_TENANTS, SCOPE_SETTING

POLICY = "tenant_isolation"
# True when the session's role is (a member of) the platform role: the only roles for which the
# all-tenants scope means every tenant. For any other role, the application role included, '*' is
# just a tenant id no row has, so code holding the application role cannot widen its own scope.
CROSS_TENANT_FUNCTION = "sentinai_may_cross_tenants"


def cross_tenant_function_sql(platform_role: str) -> str:
    return (
        f"CREATE OR REPLACE FUNCTION {CROSS_TENANT_FUNCTION}() RETURNS boolean LANGUAGE sql STABLE AS $$ "
        "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = "
        f"'{platform_role}' AND pg_has_role(current_user, oid, 'USAGE')) $$"
    )


def _predicate(platform_only: bool = True, once_per_query: bool = True) -> str:
    scope = f"current_setting('{SCOPE_SETTING}', true)"
    everyone = f"{scope} = '{ALL_TENANTS}'"
    if platform_only:
        # AND and OR evaluate left to right and stop early: a tenant-scoped row never calls the function.
        # As a scalar subquery it is an InitPlan: asked once per statement (when first needed), not
        # once per row of an all-tenants scan (the stream relay's reads paid ~7 us per event for it).
        check = f"(SELECT {CROSS_TENANT_FUNCTION}())" if once_per_query else f"{CROSS_TENANT_FUNCTION}()"
        everyone = f"({everyone} AND {check})"
    return f"(tenant_id = {scope} OR {everyone})"


def policy_sql(table: str, platform_only: bool = True, once_per_query: bool = True) -> list[str]:
    predicate = _predicate(platform_only, once_per_query)
    return [
        f'DROP POLICY IF EXISTS {POLICY} ON "{table}"',
        f'CREATE POLICY {POLICY} ON "{table}" USING {predicate} WITH CHECK {predicate}',
    ]


def rls_sql(table: str) -> list[str]:
    from django.conf import settings

    return [
        cross_tenant_function_sql(settings.DB_PLATFORM_ROLE),
        f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY',
        # Forced: the schema owner is bound by the policy too (owners bypass unforced policies), so
        # no role but a superuser reads a tenant's rows outside its scope. A data migration on a
        # tenant table must therefore open a scope.
        f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY',
        *policy_sql(table),
    ]


class _TableRLSOperation(migrations.operations.base.Operation):
    """A migration operation on one table's row-level security: SQL only (no model state), PostgreSQL
    only (a no-op on the embedded SQLite default)."""

    reduces_to_sql = True
    reversible = True

    def __init__(self, table: str):
        self.table = table

    def state_forwards(self, app_label, state):
        pass

    def deconstruct(self):
        return (self.__class__.__qualname__, [self.table], {})


class EnableTenantRLS(_TableRLSOperation):
    """Migration operation: tenant-isolation policy on `table`."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            for statement in rls_sql(self.table):
                schema_editor.execute(statement)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f'DROP POLICY IF EXISTS {POLICY} ON "{self.table}"')
            schema_editor.execute(f'ALTER TABLE "{self.table}" NO FORCE ROW LEVEL SECURITY')
            schema_editor.execute(f'ALTER TABLE "{self.table}" DISABLE ROW LEVEL SECURITY')

    def describe(self):
        return f"Enable tenant row-level security on {self.table}"


class _PolicyChange(_TableRLSOperation):
    """Re-creates the table's policy: forwards as `forwards` (keyword arguments of policy_sql) says,
    backwards as `backwards` says."""

    forwards: dict = {}
    backwards: dict = {}
    what = ""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            for statement in policy_sql(self.table, **self.forwards):
                schema_editor.execute(statement)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            for statement in policy_sql(self.table, **self.backwards):
                schema_editor.execute(statement)

    def describe(self):
        return self.what.format(table=self.table)


class PlatformOnlyAllTenants(_PolicyChange):
    """Migration operation: the table's policy honours the all-tenants scope only for the platform
    role (before, any role could set it). Needs CrossTenantFunction first."""

    backwards = {"platform_only": False}
    what = "All-tenants scope on {table} for the platform role only"


class CrossTenantCheckOncePerQuery(_PolicyChange):
    """Migration operation: the table's policy asks whether the role is the platform role once per
    statement (an InitPlan) instead of once per row. The same rows match."""

    backwards = {"once_per_query": False}
    what = "The platform-role check of {table}'s policy once per statement"


class CrossTenantFunction(migrations.operations.base.Operation):
    """Migration operation: the function the tenant policies call to ask whether the session's role
    is the platform role (settings.DB_PLATFORM_ROLE at migration time)."""

    reduces_to_sql = True
    reversible = True

    def state_forwards(self, app_label, state):
        pass

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        from django.conf import settings

        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(cross_tenant_function_sql(settings.DB_PLATFORM_ROLE))

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        pass  # policies reverted by PlatformOnlyAllTenants no longer call it; keeping it is harmless

    def describe(self):
        return "The platform-role check of the tenant policies"

    def deconstruct(self):
        return (self.__class__.__qualname__, [], {})


class PostgresSQL(migrations.operations.base.Operation):
    """Migration operation: SQL that only PostgreSQL runs (storage parameters, BRIN indexes); a no-op
    on the embedded SQLite default."""

    reduces_to_sql = True
    reversible = True

    def __init__(self, sql: str, reverse_sql: str = ""):
        self.sql = sql
        self.reverse_sql = reverse_sql

    def state_forwards(self, app_label, state):
        pass

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(self.sql)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql" and self.reverse_sql:
            schema_editor.execute(self.reverse_sql)

    def describe(self):
        return f"PostgreSQL: {self.sql[:60]}"

    def deconstruct(self):
        return (self.__class__.__qualname__, [self.sql, self.reverse_sql], {})


# Tables the application role may read and insert but never change: the event store.
APPEND_ONLY_TABLES = ("exception_event",)


def grant_app_role(connection, role: str) -> None:
    """Give a (non-owner) runtime role DML on the schema; idempotent. Run after migrate for the
    application role and the platform role."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        if cursor.fetchone() is None or role == connection.settings_dict.get("USER"):
            return
        cursor.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
        cursor.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"')
        cursor.execute(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
        for table in APPEND_ONLY_TABLES:
            cursor.execute(f'REVOKE UPDATE, DELETE ON "{table}" FROM "{role}"')


class ForceTenantRLS(_TableRLSOperation):
    """Migration operation: bind the table's owner by its row-level security policy too. Tables
    created with EnableTenantRLS since are forced already."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f'ALTER TABLE "{self.table}" FORCE ROW LEVEL SECURITY')

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f'ALTER TABLE "{self.table}" NO FORCE ROW LEVEL SECURITY')

    def describe(self):
        return f"Force tenant row-level security on {self.table}"
