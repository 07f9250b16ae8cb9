"""The tenant policies ask whether the session's role is the platform role once per statement (a
scalar subquery, planned as an InitPlan) rather than once per row: an all-tenants read of many rows (the
Kafka relay's, an operator's list) called the function for every row. Tenant-scoped statements never
reach the check; the rows that match are the same."""

from django.db import migrations

from sentinai.tenancy.rls import CrossTenantCheckOncePerQuery


class Migration(migrations.Migration):
    dependencies = [("sentinai", "0008_dead_letter_outbox_source")]

    operations = [
        CrossTenantCheckOncePerQuery("dead_letter"),
        CrossTenantCheckOncePerQuery("event_attempt"),
        CrossTenantCheckOncePerQuery("exception_event"),
        CrossTenantCheckOncePerQuery("exception_stream"),
        CrossTenantCheckOncePerQuery("outbox"),
        CrossTenantCheckOncePerQuery("parked_event"),
        CrossTenantCheckOncePerQuery("processed_event"),
        CrossTenantCheckOncePerQuery("stream_outbox"),
    ]
