"""PostgreSQL only: tenant isolation (row-level security) on every tenant table, and storage tuning of
the event store's hot tables."""

from django.db import migrations

from sentinai.tenancy.rls import EnableTenantRLS, PostgresSQL


class Migration(migrations.Migration):
    dependencies = [("sentinai", "0001_initial")]

    operations = [
        EnableTenantRLS("exception_stream"),
        EnableTenantRLS("exception_event"),
        EnableTenantRLS("outbox"),
        EnableTenantRLS("processed_event"),
        EnableTenantRLS("event_attempt"),
        EnableTenantRLS("parked_event"),
        EnableTenantRLS("dead_letter"),
        # Stream heads are updated on every append: free room on each page keeps those updates HOT.
        PostgresSQL(
            "ALTER TABLE exception_stream SET (fillfactor = 50)",
            "ALTER TABLE exception_stream RESET (fillfactor)",
        ),
        PostgresSQL(
            "CREATE INDEX exception_event_recorded_brin ON exception_event USING brin (recorded_at)",
            "DROP INDEX exception_event_recorded_brin",
        ),
    ]
