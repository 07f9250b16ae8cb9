"""Tenant isolation on PostgreSQL: a row-level security policy on every tenant table."""

from django.db import migrations

from sentinai.tenancy.rls import EnableTenantRLS


class Migration(migrations.Migration):
    dependencies = [("playbooks_app", "0001_initial")]

    operations = [
        EnableTenantRLS("playbook"),
        EnableTenantRLS("playbook_step"),
        EnableTenantRLS("playbook_run"),
        EnableTenantRLS("playbook_run_step"),
    ]
