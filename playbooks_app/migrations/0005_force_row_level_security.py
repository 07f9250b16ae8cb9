"""The tables' owner is bound by their tenant policies too (issue 11: RLS was enabled, not forced)."""

from django.db import migrations

from sentinai.tenancy.rls import ForceTenantRLS


class Migration(migrations.Migration):
    dependencies = [("playbooks_app", "0004_run_policy")]

    operations = [
        ForceTenantRLS("playbook"),
        ForceTenantRLS("playbook_run"),
        ForceTenantRLS("playbook_run_step"),
        ForceTenantRLS("playbook_step"),
    ]
