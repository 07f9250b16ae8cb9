"""The stream outbox carries its events ready to produce (`messages`), so the Kafka relay reads one column
per row instead of looking each event up in the event store and building its JSON there
(docs/performance.md, "The stream relay reads what the append wrote").

On PostgreSQL the column is compressed with lz4 (far cheaper per byte than the default pglz, and JSON
compresses well) and kept in the row (STORAGE MAIN) rather than moved to the TOAST table: the row lives
from the append to the relay's delete, a few hundred milliseconds, and an out-of-line value would cost
a TOAST insert and delete for each. A server built without lz4 keeps its default compression.

And both outboxes are vacuumed as the queues they are (QUEUE_VACUUM below)."""

from django.db import migrations, models

# Both outboxes are queues: every row is deleted within moments of its insert, and the readers start at
# the oldest (the stream relay's probe and read of each shard, the outbox relay's scan), so each dead
# row is stepped over until a vacuum removes it. Measured: 1,100-1,400 dead rows stepped over per probe
# and 1.5-2 ms per probe, 30 s into `make bench`, with none vacuumed - the tables' default threshold is
# a share of their (near zero) live rows, and is met long before autovacuum's next visit. Vacuuming
# them after a fixed number of dead rows, unthrottled (small tables: a few milliseconds each), keeps
# the prefix short; autovacuum_naptime (scripts/tune-postgres.sh, docs/runbook.md) bounds how soon.
QUEUE_TABLES = ("stream_outbox", "outbox")
QUEUE_VACUUM = (
    "autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_cost_delay = 0"
)

POSTGRES_SQL = (
    "".join(f"ALTER TABLE {table} SET ({QUEUE_VACUUM});\n" for table in QUEUE_TABLES)
    + """
ALTER TABLE stream_outbox ALTER COLUMN messages SET STORAGE MAIN;
DO $$ BEGIN
    ALTER TABLE stream_outbox ALTER COLUMN messages SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'this server has no lz4: stream_outbox.messages keeps the default compression';
END $$;
"""
)


def storage(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_SQL)


class Migration(migrations.Migration):
    dependencies = [("sentinai", "0009_cross_tenant_check_once_per_query")]

    operations = [
        migrations.AddField(model_name="streamoutbox", name="messages", field=models.TextField(blank=True, null=True)),
        migrations.RunPython(storage, migrations.RunPython.noop),
    ]
