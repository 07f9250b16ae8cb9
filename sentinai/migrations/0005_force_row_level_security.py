"""The tables' owner is bound by their tenant policies too (issue 11: RLS was enabled, not forced)."""

from django.db import migrations

from sentinai.tenancy.rls import ForceTenantRLS


class Migration(migrations.Migration):
    dependencies = [("sentinai", "0004_api_key_scopes")]

    operations = [
        ForceTenantRLS("dead_letter"),
        ForceTenantRLS("event_attempt"),
        ForceTenantRLS("exception_event"),
        ForceTenantRLS("exception_stream"),
        ForceTenantRLS("outbox"),
        ForceTenantRLS("parked_event"),
        ForceTenantRLS("processed_event"),
        ForceTenantRLS("stream_outbox"),
    ]
