"""Tests run as the production platform role: row-level security binds it only because it is neither a
superuser, nor exempt from RLS, nor the owner of the tables (owners bypass unforced policies)."""

import pytest
from django.db import connection, connections


@pytest.mark.django_db
def test_the_tests_connect_as_the_rls_bound_platform_role_not_the_schema_owner():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_user, current_database(), rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        )
        user, database, superuser, bypass_rls = cursor.fetchone()
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tableowner = current_user")
        owned = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT DISTINCT tableowner FROM pg_tables WHERE tablename IN ('exception_event', 'outbox')")
        owners = {row[0] for row in cursor.fetchall()}
    assert user == "sentinai_platform"
    assert database == connection.settings_dict["NAME"] and database.startswith("test_")
    assert superuser is False
    assert bypass_rls is False
    assert owned == []
    assert owners == {connections["owner"].settings_dict["USER"]} != {user}
