"""Runs and their steps are rewritten at every hop of a run, so each write should touch as few indexes as it can
(docs/performance.md, "Only the indexes read; room for HOT updates").

- The tenant's own index on both tables, and the step's run index, go: every lookup by tenant goes through
  playbook_run_exception (tenant, exception, ...), and every lookup by run through playbook_run_step_uniq
  (run, position), which the planner uses for them once the narrower index is gone. Each was one more index
  entry per row version written.
- On PostgreSQL, both tables leave 30 % of each page free (fillfactor 70). A run's rows are written together
  and then updated a few times within seconds; no indexed column changes, so each update can be a HOT
  update (no index entries at all) - but only if the new version fits on the row's page. With full pages
  (the default fillfactor 100) 4 % of the run updates and 28 % of the step updates were HOT.
"""

import django.db.models.deletion
from django.db import migrations, models

FILLFACTOR = 70


def room_for_hot_updates(apps, schema_editor):
    # A new fillfactor applies to pages written from now on; existing pages keep their rows.
    if schema_editor.connection.vendor == "postgresql":
        for table in ("playbook_run", "playbook_run_step"):
            schema_editor.execute(f"ALTER TABLE {table} SET (fillfactor = {FILLFACTOR})")


class Migration(migrations.Migration):
    dependencies = [
        ("playbooks_app", "0008_cross_tenant_check_once_per_query"),
        ("sentinai", "0010_stream_outbox_messages"),
    ]

    operations = [
        migrations.RunPython(room_for_hot_updates, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="playbookrun",
            name="tenant",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="sentinai.tenant",
            ),
        ),
        migrations.AlterField(
            model_name="playbookrunstep",
            name="run",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="steps",
                to="playbooks_app.playbookrun",
            ),
        ),
        migrations.AlterField(
            model_name="playbookrunstep",
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
