"""API keys get scopes. Existing keys keep today's powers minus writing for other tenants: every key
ingests, reads and approves for its own tenant; an operator key also operates (reads every tenant,
replays dead letters)."""

from django.db import migrations, models

import sentinai.models


def scopes_from_operator_flag(apps, schema_editor):
    keys = apps.get_model("sentinai", "TenantAPIKey").objects.using(schema_editor.connection.alias)
    keys.filter(is_operator=False).update(scopes=["ingest", "read", "approve"])
    keys.filter(is_operator=True).update(scopes=["ingest", "read", "approve", "operate"])


def operator_flag_from_scopes(apps, schema_editor):
    keys = apps.get_model("sentinai", "TenantAPIKey").objects.using(schema_editor.connection.alias)
    for key in keys.all():
        key.is_operator = "operate" in (key.scopes or [])
        key.save(update_fields=["is_operator"])


class Migration(migrations.Migration):
    dependencies = [("sentinai", "0003_stream_outbox")]

    operations = [
        migrations.AddField(
            model_name="tenantapikey",
            name="scopes",
            field=models.JSONField(default=sentinai.models._default_scopes),
        ),
        migrations.RunPython(scopes_from_operator_flag, operator_flag_from_scopes),
        migrations.RemoveField(model_name="tenantapikey", name="is_operator"),
    ]
