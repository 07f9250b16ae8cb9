"""feedback's single-column exception index goes: lookups by exception go through feedback_exception (tenant,
exception, created_at) (docs/performance.md, "The last foreign-key indexes").
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("exceptions_app", "0010_feedback_without_tenant_index"),
    ]

    operations = [
        migrations.AlterField(
            model_name="feedback",
            name="exception",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="feedback",
                to="exceptions_app.exceptionrecord",
            ),
        ),
    ]
