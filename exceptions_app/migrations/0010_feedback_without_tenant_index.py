"""The tenant's own index on feedback goes: lookups by tenant go through feedback_exception (tenant,
exception, created_at) (docs/performance.md, "Only the indexes read; room for HOT updates").
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("exceptions_app", "0009_cross_tenant_check_once_per_query"),
        ("sentinai", "0010_stream_outbox_messages"),
    ]

    operations = [
        migrations.AlterField(
            model_name="feedback",
            name="tenant",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="sentinai.tenant",
            ),
        ),
    ]
