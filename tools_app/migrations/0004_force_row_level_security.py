"""The tables' owner is bound by their tenant policies too (issue 11: RLS was enabled, not forced)."""

from django.db import migrations

from sentinai.tenancy.rls import ForceTenantRLS


class Migration(migrations.Migration):
    dependencies = [("tools_app", "0003_execution_idempotency_key")]

    operations = [
        ForceTenantRLS("tool"),
        ForceTenantRLS("tool_execution"),
    ]
