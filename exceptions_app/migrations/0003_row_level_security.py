"""Tenant isolation on PostgreSQL: a row-level security policy on every tenant table."""

from django.db import migrations

from sentinai.tenancy.rls import EnableTenantRLS


class Migration(migrations.Migration):
    dependencies = [("exceptions_app", "0002_initial")]

    operations = [
        EnableTenantRLS("exception"),
        EnableTenantRLS("feedback"),
    ]
