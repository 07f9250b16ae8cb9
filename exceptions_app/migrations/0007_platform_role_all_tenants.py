"""The all-tenants scope shows every tenant to the platform role only (issue 11): code holding the
application role can no longer widen its own scope by setting it."""

from django.db import migrations

from sentinai.tenancy.rls import PlatformOnlyAllTenants


class Migration(migrations.Migration):
    dependencies = [("exceptions_app", "0006_force_row_level_security"), ("sentinai", "0007_platform_role_all_tenants")]

    operations = [
        PlatformOnlyAllTenants("exception"),
        PlatformOnlyAllTenants("feedback"),
    ]
