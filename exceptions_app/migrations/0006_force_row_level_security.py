"""The tables' owner is bound by their tenant policies too (issue 11: RLS was enabled, not forced)."""

from django.db import migrations

from sentinai.tenancy.rls import ForceTenantRLS


class Migration(migrations.Migration):
    dependencies = [("exceptions_app", "0005_open_exceptions_index")]

    operations = [
        ForceTenantRLS("exception"),
        ForceTenantRLS("feedback"),
    ]
