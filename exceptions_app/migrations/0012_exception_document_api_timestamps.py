"""PostgreSQL: the single-exception document writes its timestamps as the rest of the API does.

sentinai_exception_document (0004) built its timestamps with PostgreSQL's own JSON form
("+00:00", trailing zeros of the fraction dropped), while the list, the playbook view and every
other response write them as the API's renderer does (UTC with "Z", microseconds only when there
are any: sentinai.api.renderers.api_timestamp_sql). The same instant came back as two different
strings from the list and the detail. The function now runs selectors._DETAIL_SQL as it is today
(tests/integration/test_database.py checks the two are identical).
"""

import importlib

from django.db import migrations

from sentinai.tenancy.rls import PostgresSQL

STATEMENT = (
    "SELECT (json_build_object('exception_id', e.\"id\", 'tenant_id', e.\"tenant_id\", 'source_syst"
    'em\', e."source_system", \'source_ref\', e."source_ref", \'exception_type\', e."exception_type"'
    ", 'severity', e.\"severity\", 'priority', e.\"priority\", 'status', e.\"status\", 'manual', e.\"m"
    "anual\", 'payload', e.\"payload\", 'normalized', e.\"normalized\", 'invalid_reasons', e.\"invali"
    'd_reasons", \'occurred_at\', CASE WHEN e."occurred_at" IS NULL THEN NULL ELSE to_char((e."oc'
    "curred_at\" AT TIME ZONE 'UTC'), 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN date_trunc('second"
    "', (e.\"occurred_at\" AT TIME ZONE 'UTC')) = (e.\"occurred_at\" AT TIME ZONE 'UTC') THEN '' EL"
    "SE to_char((e.\"occurred_at\" AT TIME ZONE 'UTC'), '.US') END || 'Z' END, 'sla_due_at', CASE"
    ' WHEN e."sla_due_at" IS NULL THEN NULL ELSE to_char((e."sla_due_at" AT TIME ZONE \'UTC\'), \''
    "YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN date_trunc('second', (e.\"sla_due_at\" AT TIME ZONE '"
    "UTC')) = (e.\"sla_due_at\" AT TIME ZONE 'UTC') THEN '' ELSE to_char((e.\"sla_due_at\" AT TIME "
    "ZONE 'UTC'), '.US') END || 'Z' END, 'closed_at', CASE WHEN e.\"closed_at\" IS NULL THEN NULL"
    " ELSE to_char((e.\"closed_at\" AT TIME ZONE 'UTC'), 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN "
    "date_trunc('second', (e.\"closed_at\" AT TIME ZONE 'UTC')) = (e.\"closed_at\" AT TIME ZONE 'UT"
    "C') THEN '' ELSE to_char((e.\"closed_at\" AT TIME ZONE 'UTC'), '.US') END || 'Z' END, 'creat"
    'ed_at\', CASE WHEN e."created_at" IS NULL THEN NULL ELSE to_char((e."created_at" AT TIME ZO'
    "NE 'UTC'), 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN date_trunc('second', (e.\"created_at\" AT"
    " TIME ZONE 'UTC')) = (e.\"created_at\" AT TIME ZONE 'UTC') THEN '' ELSE to_char((e.\"created_"
    "at\" AT TIME ZONE 'UTC'), '.US') END || 'Z' END, 'updated_at', CASE WHEN e.\"updated_at\" IS "
    "NULL THEN NULL ELSE to_char((e.\"updated_at\" AT TIME ZONE 'UTC'), 'YYYY-MM-DD\"T\"HH24:MI:SS'"
    ") || CASE WHEN date_trunc('second', (e.\"updated_at\" AT TIME ZONE 'UTC')) = (e.\"updated_at\""
    " AT TIME ZONE 'UTC') THEN '' ELSE to_char((e.\"updated_at\" AT TIME ZONE 'UTC'), '.US') END "
    "|| 'Z' END, 'events', COALESCE((SELECT json_agg(json_build_object('event_id', v.\"event_id\""
    ", 'event_type', v.\"event_type\", 'sequence', v.\"sequence\", 'causation_id', v.\"causation_id\""
    ", 'producer', v.\"producer\", 'recorded_at', CASE WHEN v.\"recorded_at\" IS NULL THEN NULL ELS"
    "E to_char((v.\"recorded_at\" AT TIME ZONE 'UTC'), 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN da"
    "te_trunc('second', (v.\"recorded_at\" AT TIME ZONE 'UTC')) = (v.\"recorded_at\" AT TIME ZONE '"
    "UTC') THEN '' ELSE to_char((v.\"recorded_at\" AT TIME ZONE 'UTC'), '.US') END || 'Z' END, 'p"
    'ayload\', v."payload") ORDER BY v.sequence) FROM exception_event v WHERE v.exception_id = e'
    ".id), '[]'::json)))::text FROM exception e WHERE e.tenant_id = p_tenant AND e.id = p_excep"
    "tion"
)

SQL = (
    """
CREATE OR REPLACE FUNCTION sentinai_exception_document(p_tenant text, p_exception uuid) RETURNS text
LANGUAGE plpgsql AS $fn$
DECLARE
    previous text := current_setting('sentinai.tenant_id', true);
    document text;
BEGIN
    PERFORM set_config('sentinai.tenant_id', p_tenant, true);
    """
    + STATEMENT
    + """ INTO document;
    PERFORM set_config('sentinai.tenant_id', coalesce(previous, ''), true);
    RETURN document;
END
$fn$
"""
)

PREVIOUS = importlib.import_module("exceptions_app.migrations.0004_exception_document_function").SQL


class Migration(migrations.Migration):
    dependencies = [("exceptions_app", "0011_feedback_exception_index")]

    operations = [PostgresSQL(SQL, PREVIOUS)]
