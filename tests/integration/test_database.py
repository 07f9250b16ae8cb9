"""The database guarantees: an append-only event store and row-level security on tenant tables."""

import uuid

import psycopg
import pytest
from django.apps import apps
from django.db import DatabaseError, connection, connections, transaction

from exceptions_app.models import ExceptionRecord
from sentinai.models import ExceptionEvent
from sentinai.tenancy.scope import all_tenants_scope, tenant_scope
from tests.support.factories import append, make_exceptions, make_tenant

pytestmark = pytest.mark.django_db(transaction=True)


def _one_event():
    make_tenant("acme")
    (exception_id,) = make_exceptions("acme", 1)
    return append("acme", exception_id, "TriageRequested", {"exception_type": "x"})


def test_application_role_is_neither_owner_nor_superuser():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT r.rolsuper, r.rolbypassrls, t.tableowner = current_user FROM pg_roles r, pg_tables t "
            "WHERE r.rolname = current_user AND t.tablename = 'exception_event'"
        )
        assert cursor.fetchone() == (False, False, False)


@pytest.mark.django_db(transaction=True, databases=["default", "owner"])
@pytest.mark.parametrize("alias", ["default", "owner"])
def test_event_store_rejects_update_and_delete(alias):
    event = _one_event()
    conn = connections[alias]
    for statement in (
        "UPDATE exception_event SET producer = 'forged' WHERE event_id = %s",
        "DELETE FROM exception_event WHERE event_id = %s",
    ):
        with pytest.raises(DatabaseError), transaction.atomic(using=alias), conn.cursor() as cursor:
            cursor.execute("SELECT set_config('sentinai.tenant_id', '*', true)")
            cursor.execute(statement, [event.event_id])
    with all_tenants_scope():
        stored = ExceptionEvent.objects.get(event_id=event.event_id)
    assert stored.producer == "intake"  # as appended, not "forged"


@pytest.mark.django_db(transaction=True, databases=["default", "owner"])
def test_trigger_rejects_update_even_for_the_owner_role_explicitly():
    event = _one_event()
    owner = connections["owner"]
    with (
        pytest.raises(DatabaseError, match="Cannot update|protect|append"),
        transaction.atomic(using="owner"),
        owner.cursor() as cursor,
    ):
        # The owner is bound by row-level security (forced) too: without a scope it would match no row.
        cursor.execute("SELECT set_config('sentinai.tenant_id', 'acme', true)")
        cursor.execute("UPDATE exception_event SET sequence = 99 WHERE event_id = %s", [event.event_id])


def test_query_with_no_tenant_set_sees_no_rows():
    _one_event()
    assert ExceptionRecord.objects.count() == 0
    assert ExceptionEvent.objects.count() == 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM exception_event")
        assert cursor.fetchone() == (0,)
    with all_tenants_scope():
        assert ExceptionEvent.objects.count() == 1


def test_a_tenant_scope_sees_only_its_own_rows_and_cannot_write_others():
    _one_event()
    make_tenant("globex")
    make_exceptions("globex", 2)
    with tenant_scope("globex"):
        assert ExceptionRecord.objects.count() == 2
        assert ExceptionEvent.objects.count() == 0
    with tenant_scope("acme"):
        assert ExceptionRecord.objects.count() == 1
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            ExceptionRecord.objects.create(id=uuid.uuid4(), tenant_id="globex", source_system="x")


def test_every_tenant_table_has_row_level_security():
    tenant_tables = {
        model._meta.db_table
        for model in apps.get_models()
        if any(f.column == "tenant_id" for f in model._meta.concrete_fields) and model._meta.db_table != "api_key"
    }
    assert {"exception", "exception_event", "outbox", "tool_execution", "playbook_run"} <= tenant_tables
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relrowsecurity AND relname = ANY(%s)", [sorted(tenant_tables)]
        )
        protected = {row[0] for row in cursor.fetchall()}
    assert protected == tenant_tables


def test_exception_document_function_runs_the_documented_statement():
    # bench/queries.py explains selectors._DETAIL_SQL; the function must run exactly that statement.
    from exceptions_app.selectors import _DETAIL_SQL

    with connection.cursor() as cursor:
        cursor.execute("SELECT prosrc FROM pg_proc WHERE proname = 'sentinai_exception_document'")
        (body,) = cursor.fetchone()
    statement = _DETAIL_SQL.replace("%s", "p_tenant", 1).replace("%s", "p_exception", 1)
    assert statement + " INTO document;" in body


def test_exception_document_function_is_scoped_and_restores_the_scope():
    from exceptions_app.selectors import exception_detail_json

    event = _one_event()
    exception_id = str(event.exception_id)
    make_tenant("globex")
    assert exception_detail_json(tenant_id="globex", exception_id=exception_id) is None
    assert exception_detail_json(tenant_id="*", exception_id=exception_id) is None
    document = exception_detail_json(tenant_id="acme", exception_id=exception_id)
    assert b'"TriageRequested"' in document
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('sentinai.tenant_id', 'globex', true)")
        cursor.execute("SELECT sentinai_exception_document('acme', %s::uuid)", [exception_id])
        assert cursor.fetchone()[0] is not None
        cursor.execute("SELECT current_setting('sentinai.tenant_id')")
        assert cursor.fetchone() == ("globex",)
        assert ExceptionRecord.objects.count() == 0


@pytest.mark.django_db(transaction=True, databases=["default", "owner"])
def test_the_schema_owner_is_bound_by_row_level_security_too():
    _one_event()
    with transaction.atomic(using="owner"), connections["owner"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM exception_event")
        assert cursor.fetchone() == (0,)  # no scope: no rows, even for the tables' owner
        cursor.execute("SELECT set_config('sentinai.tenant_id', 'acme', true)")
        cursor.execute("SELECT count(*) FROM exception_event")
        assert cursor.fetchone() == (1,)
        cursor.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_policies p ON p.tablename = c.relname "
            "WHERE p.policyname = 'tenant_isolation' AND NOT c.relforcerowsecurity"
        )
        assert cursor.fetchone() == (0,)  # every table with a tenant policy forces it


def _as_application_role():
    """A connection of the tenant-bound application role, as an agent worker holds."""
    from django.conf import settings

    db = connection.settings_dict
    return psycopg.connect(host=db["HOST"], port=db["PORT"], dbname=db["NAME"], user=settings.DB_APP_ROLE)


def test_the_application_role_cannot_widen_its_own_scope_to_every_tenant():
    make_tenant("acme")
    make_tenant("globex")
    make_exceptions("acme", 2)
    make_exceptions("globex", 3)
    with all_tenants_scope():  # the platform role (the test process's) sees both tenants
        assert ExceptionRecord.objects.count() == 5
    with _as_application_role() as app, app.cursor() as cursor:
        cursor.execute("SELECT set_config('sentinai.tenant_id', '*', false)")
        cursor.execute("SELECT count(*) FROM exception")
        assert cursor.fetchone() == (0,)  # '*' is no tenant for it: nothing
        cursor.execute("SELECT count(*) FROM exception_event")
        assert cursor.fetchone() == (0,)
        cursor.execute("SELECT set_config('sentinai.tenant_id', 'globex', false)")
        cursor.execute("SELECT count(*), min(tenant_id), max(tenant_id) FROM exception")
        assert cursor.fetchone() == (3, "globex", "globex")
        cursor.execute("SELECT set_config('sentinai.tenant_id', '*', false)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # nor write as every tenant
            cursor.execute(
                "INSERT INTO exception_stream (exception_id, tenant_id, last_sequence, consumer_heads) "
                "VALUES (%s, 'acme', 0, '{}')",
                [uuid.uuid4()],
            )


def test_a_process_holding_the_application_role_is_refused_the_all_tenants_scope_by_name(tmp_path):
    import subprocess
    import sys

    from tests.support.host import ROOT
    from tests.support.workers import service_env

    script = (
        "import django; django.setup()\n"
        "from sentinai.tenancy.scope import CrossTenantRefused, all_tenants_scope\n"
        "try:\n"
        "    with all_tenants_scope(): print('OPENED')\n"
        "except CrossTenantRefused as exc: print('REFUSED', exc)\n"
    )
    for platform, expected in ((False, "REFUSED database role 'sentinai_app'"), (True, "OPENED")):
        result = subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env=service_env(platform=platform),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.stdout.startswith(expected), result.stdout + result.stderr


def test_a_projection_change_to_the_value_the_row_holds_is_not_written():
    from sentinai.eventstore import store

    make_tenant("acme")
    (exception_id,) = make_exceptions("acme", 1)

    def write(status: str) -> None:
        with tenant_scope("acme"), transaction.atomic():
            streams = store.lock_streams("acme", [exception_id], ("status",))
            streams[exception_id].changes["status"] = status
            store.append(tenant_id="acme", events=[], producer="playbook", streams=streams)

    def row_version() -> tuple:
        with tenant_scope("acme"), connection.cursor() as cursor:
            cursor.execute("SELECT xmin::text, status FROM exception WHERE id = %s", [exception_id])
            return cursor.fetchone()

    before = row_version()
    write(before[1])  # the playbook agent setting in_progress again, at its next step
    assert row_version() == before
    write("in_progress")
    assert row_version()[1] == "in_progress" and row_version()[0] != before[0]


def test_the_feedback_agents_counts_by_prepared_statements_are_the_tenants_rows_only():
    """succeeded_step_counts and failed_execution_counts read on the server cursor (prepared after a
    few batches): the same counts on every call, another tenant's rows never among them."""
    from collections import Counter

    from playbooks_app.models import PlaybookRun, PlaybookRunStep
    from playbooks_app.selectors import succeeded_step_counts
    from tools_app.models import ToolExecution
    from tools_app.selectors import failed_execution_counts

    for tenant_id in ("acme", "globex"):
        make_tenant(tenant_id)
    x0, x1, x2 = make_exceptions("acme", 3)
    (other,) = make_exceptions("globex", 1)

    def run(tenant_id, exception_id, statuses):
        row = PlaybookRun.objects.create(tenant_id=tenant_id, exception_id=exception_id, playbook_id=uuid.uuid4())
        for position, status in enumerate(statuses):
            PlaybookRunStep.objects.create(
                run=row, tenant_id=tenant_id, position=position, name=f"s{position}", action="tool", status=status
            )

    def executions(tenant_id, exception_id, statuses):
        for status in statuses:
            ToolExecution.objects.create(tenant_id=tenant_id, exception_id=exception_id, tool_name="t", status=status)

    with tenant_scope("acme"):
        run("acme", x0, ["succeeded", "succeeded", "failed"])
        run("acme", x0, ["succeeded"])
        run("acme", x1, ["pending"])
        executions("acme", x0, ["failed", "dead_lettered", "succeeded"])
        executions("acme", x2, ["failed"])
    with tenant_scope("globex"):
        run("globex", other, ["succeeded"])
        executions("globex", other, ["failed"])
    with tenant_scope("acme"):
        for _ in range(7):  # past psycopg's prepare threshold (5)
            assert succeeded_step_counts(tenant_id="acme", exception_ids=[x0, x1, x2, other]) == Counter({x0: 3})
            assert failed_execution_counts(tenant_id="acme", exception_ids=[x0, x1, x2, other]) == Counter(
                {x0: 2, x2: 1}
            )


def test_statements_sent_in_a_pipeline_answer_after_it_and_their_errors_abort_the_transaction():
    """bulk.pipeline: reads come back after the block; a statement that fails raises django.db's
    error (at the next read or the block's end) and nothing of the transaction is kept."""
    from django.db import IntegrityError

    from sentinai.kernel import bulk
    from sentinai.models import ProcessedEvent

    make_tenant("acme")
    row = {"id": str(uuid.uuid4()), "consumer": "triage", "event_id": str(uuid.uuid4()), "tenant_id": "acme"}
    with tenant_scope("acme"):
        with bulk.pipeline():
            inserted = bulk.insert_later(ProcessedEvent, [row], returning=["event_id"])
            with bulk.pipeline():  # re-entrant: no sync of its own
                setting = bulk.select_later("SELECT current_setting('sentinai.tenant_id')")
        assert inserted() == [(row["event_id"],)]
        assert setting() == [("acme",)]

    other = {**row, "event_id": str(uuid.uuid4())}  # the same primary key again
    with pytest.raises(IntegrityError), tenant_scope("acme"), bulk.pipeline():
        bulk.insert(ProcessedEvent, [{**other, "id": str(uuid.uuid4())}])
        bulk.insert(ProcessedEvent, [other])
    with tenant_scope("acme"):
        assert list(ProcessedEvent.objects.values_list("event_id", flat=True)) == [uuid.UUID(row["event_id"])]


def _round_trips(trace: str) -> list[str]:
    """Messages after which the client waits for the server, in a libpq protocol trace: a simple
    Query, a Sync (the end of extended-protocol statements, or of a pipeline), a Flush request."""
    trips = []
    for line in trace.splitlines():
        fields = line.split("\t")
        if len(fields) > 3 and fields[1] == "F" and fields[3] in ("Query", "Sync", "Flush"):
            trips.append(line)
    return trips


def test_a_scope_opens_its_transaction_and_sets_the_tenant_in_one_round_trip(tmp_path):
    """The transaction's BEGIN and the tenant setting go together: a scoped statement and its commit
    cost three round trips, not four."""
    make_tenant("acme")
    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    path = tmp_path / "libpq.trace"
    with open(path, "w") as trace:
        pgconn.trace(trace.fileno())
        try:
            with tenant_scope("acme"), connection.cursor() as cursor:
                cursor.execute("SELECT current_setting('sentinai.tenant_id')")
                assert cursor.fetchone() == ("acme",)
        finally:
            pgconn.untrace()
    trips = _round_trips(path.read_text())
    assert len(trips) == 3, trips
    assert "BEGIN; SELECT set_config('sentinai.tenant_id', 'acme', true)" in trips[0]
    assert "COMMIT" in trips[2]


def test_a_hostile_tenant_id_is_a_literal_to_the_scope_not_sql():
    """The scope's BEGIN and setting are one simple query: the tenant id (from a message, a header)
    is quoted by libpq, so it only ever names a tenant that has no rows."""
    make_tenant("acme")
    (exception_id,) = make_exceptions("acme", 1)
    hostile = "acme', true); DELETE FROM exception; SELECT set_config('sentinai.tenant_id', 'acme"
    with tenant_scope(hostile):
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('sentinai.tenant_id')")
            assert cursor.fetchone() == (hostile,)
        assert not ExceptionRecord.objects.exists()
    with tenant_scope("acme"):
        assert list(ExceptionRecord.objects.values_list("id", flat=True)) == [uuid.UUID(exception_id)]


@pytest.mark.django_db(transaction=True, databases=["default", "owner"])
def test_the_applications_sessions_are_bounded_in_time_and_the_schema_owners_are_not():
    """DB_STATEMENT_TIMEOUT_MS / DB_IDLE_IN_TRANSACTION_TIMEOUT_MS reach the server on the application's
    connections (config/settings/base.py); the owner's migrations run unbounded."""

    def show(alias: str) -> tuple[str, str]:
        with connections[alias].cursor() as cursor:
            cursor.execute("SHOW statement_timeout")
            statement = cursor.fetchone()[0]
            cursor.execute("SHOW idle_in_transaction_session_timeout")
            return statement, cursor.fetchone()[0]

    assert show("default") == ("30s", "1min")
    assert show("owner") == ("0", "0")
