"""The tenant policies ask whether the session's role is the platform role once per statement (a
scalar subquery, planned as an InitPlan) rather than once per row: an all-tenants read of many rows (the
Kafka relay's, an operator's list) called the function for every row. Tenant-scoped statements never
reach the check; the rows that match are the same."""

from django.db import migrations

from sentinai.tenancy.rls import CrossTenantCheckOncePerQuery


class Migration(migrations.Migration):
    dependencies = [("tools_app", "0006_hot_path_without_foreign_keys")]

    operations = [
        CrossTenantCheckOncePerQuery("tool"),
        CrossTenantCheckOncePerQuery("tool_execution"),
    ]
