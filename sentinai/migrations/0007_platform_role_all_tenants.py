"""The all-tenants scope shows every tenant to the platform role only (issue 11): code holding the
application role can no longer widen its own scope by setting it."""

from django.db import migrations

from sentinai.tenancy.rls import CrossTenantFunction, PlatformOnlyAllTenants


class Migration(migrations.Migration):
    dependencies = [("sentinai", "0006_dead_letter_replayed_by")]

    operations = [
        CrossTenantFunction(),
        PlatformOnlyAllTenants("dead_letter"),
        PlatformOnlyAllTenants("event_attempt"),
        PlatformOnlyAllTenants("exception_event"),
        PlatformOnlyAllTenants("exception_stream"),
        PlatformOnlyAllTenants("outbox"),
        PlatformOnlyAllTenants("parked_event"),
        PlatformOnlyAllTenants("processed_event"),
        PlatformOnlyAllTenants("stream_outbox"),
    ]
