"""Row-level security DDL (PostgreSQL only) and the application role's grants."""

from __future__ import annotations

from django.db import migrations

from sentinai.tenancy.scope import ALL_TENANTS, SCOPE_SETTING

POLICY = "tenant_isolation"


def rls_sql(table: str) -> list[str]:
    scope = f"current_setting('{SCOPE_SETTING}', true)"
    predicate = f"(tenant_id = {scope} OR {scope} = '{ALL_TENANTS}')"
    return [
        f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY',
        # Forced: the schema owner is bound by the policy too (owners bypass unforced policies), so
        # no role but a superuser reads a tenant's rows outside its scope. A data migration on a
        # tenant table must therefore open a scope.
        f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY',
        f'DROP POLICY IF EXISTS {POLICY} ON "{table}"',
        f'CREATE POLICY {POLICY} ON "{table}" USING {predicate} WITH CHECK {predicate}',
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
    """Give the (non-owner) application role DML on the schema; idempotent. Run after migrate."""
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
