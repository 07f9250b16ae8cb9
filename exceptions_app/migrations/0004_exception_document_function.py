"""PostgreSQL: the single-exception read as one function call.

The read path of one exception is the platform's hottest query. This function sets the tenant scope
for the statement (row-level security still applies: it runs as the caller), builds the JSON document
of the exception with its event chain, and restores the scope - one round trip instead of BEGIN,
set_config, SELECT and COMMIT. sentinai_exception_document(tenant, id) returns NULL for an exception
the tenant does not have.
"""

from django.db import migrations

from sentinai.tenancy.rls import PostgresSQL

SQL = """
CREATE OR REPLACE FUNCTION sentinai_exception_document(p_tenant text, p_exception uuid) RETURNS text
LANGUAGE plpgsql AS $fn$
DECLARE
    previous text := current_setting('sentinai.tenant_id', true);
    document text;
BEGIN
    PERFORM set_config('sentinai.tenant_id', p_tenant, true);
    SELECT (json_build_object('exception_id', e."id", 'tenant_id', e."tenant_id", 'source_system', e."source_system", 'source_ref', e."source_ref", 'exception_type', e."exception_type", 'severity', e."severity", 'priority', e."priority", 'status', e."status", 'manual', e."manual", 'payload', e."payload", 'normalized', e."normalized", 'invalid_reasons', e."invalid_reasons", 'occurred_at', e."occurred_at", 'sla_due_at', e."sla_due_at", 'closed_at', e."closed_at", 'created_at', e."created_at", 'updated_at', e."updated_at", 'events', COALESCE((SELECT json_agg(json_build_object('event_id', v."event_id", 'event_type', v."event_type", 'sequence', v."sequence", 'causation_id', v."causation_id", 'producer', v."producer", 'recorded_at', v."recorded_at", 'payload', v."payload") ORDER BY v.sequence) FROM exception_event v WHERE v.exception_id = e.id), '[]'::json)))::text FROM exception e WHERE e.tenant_id = p_tenant AND e.id = p_exception INTO document;
    PERFORM set_config('sentinai.tenant_id', coalesce(previous, ''), true);
    RETURN document;
END
$fn$
"""


class Migration(migrations.Migration):
    dependencies = [("exceptions_app", "0003_row_level_security"), ("sentinai", "0002_row_level_security")]

    operations = [
        PostgresSQL(SQL, "DROP FUNCTION IF EXISTS sentinai_exception_document(text, uuid)"),
    ]
