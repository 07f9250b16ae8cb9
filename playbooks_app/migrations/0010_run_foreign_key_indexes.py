"""playbook_run's single-column exception and playbook indexes go (docs/performance.md, "The last foreign-key
indexes"): every lookup of runs by exception is a tenant's and goes through playbook_run_exception (tenant,
exception, started_at) - row-level security adds the tenant to any statement that leaves it out - and no read looks
runs up by playbook (playbooks are never deleted, only superseded by a new pack version). Each was one more index
entry for every run written and every update that was not HOT.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("exceptions_app", "0011_feedback_exception_index"),
        ("playbooks_app", "0009_runs_hot_updates"),
    ]

    operations = [
        migrations.AlterField(
            model_name="playbookrun",
            name="exception",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="playbook_runs",
                to="exceptions_app.exceptionrecord",
            ),
        ),
        migrations.AlterField(
            model_name="playbookrun",
            name="playbook",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="runs",
                to="playbooks_app.playbook",
            ),
        ),
    ]
