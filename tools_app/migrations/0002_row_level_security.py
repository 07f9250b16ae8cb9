"""Tenant isolation on PostgreSQL: a row-level security policy on every tenant table."""

from django.db import migrations

from sentinai.tenancy.rls import EnableTenantRLS


class Migration(migrations.Migration):
    dependencies = [("tools_app", "0001_initial")]

    operations = [
        EnableTenantRLS("tool"),
        EnableTenantRLS("tool_execution"),
    ]
