"""tool_execution's single-column tenant and exception indexes go: every lookup by tenant, or by tenant and
exception, goes through the composite (tenant, ...) indexes, and each execution is written three times
(requested, running, ended), each a new row version with an entry in every index (its status is indexed,
so none of the updates is HOT) - docs/performance.md, "Only the indexes read; room for HOT updates".
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("exceptions_app", "0010_feedback_without_tenant_index"),
        ("sentinai", "0010_stream_outbox_messages"),
        ("tools_app", "0007_cross_tenant_check_once_per_query"),
    ]

    operations = [
        migrations.AlterField(
            model_name="toolexecution",
            name="exception",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="tool_executions",
                to="exceptions_app.exceptionrecord",
            ),
        ),
        migrations.AlterField(
            model_name="toolexecution",
            name="tenant",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="sentinai.tenant",
            ),
        ),
    ]
