"""Tenant isolation on PostgreSQL: a row-level security policy on every tenant table."""

from django.db import migrations

from sentinai.rls import EnableTenantRLS


class Migration(migrations.Migration):
    dependencies = [("sentinai", "0001_initial")]

    operations = [
        EnableTenantRLS("exception_event"),
        EnableTenantRLS("outbox"),
        EnableTenantRLS("processed_event"),
        EnableTenantRLS("event_attempt"),
        EnableTenantRLS("parked_event"),
        EnableTenantRLS("dead_letter"),
    ]
