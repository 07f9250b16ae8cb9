"""tool_execution's tool-id index goes (docs/performance.md, "The last foreign-key indexes"): no read looks
executions up by tool id (the list's tool filter is by name, through tool_execution_tool), tools are never deleted
(a pack load adds a version; an operator deactivates one), and every execution paid an entry in it at each of its
three writes, none of them HOT.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tools_app", "0008_execution_single_column_indexes"),
    ]

    operations = [
        migrations.AlterField(
            model_name="toolexecution",
            name="tool",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="executions",
                to="tools_app.tool",
            ),
        ),
    ]
