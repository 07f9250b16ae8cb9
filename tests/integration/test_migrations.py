"""Data migrations run forward on a database that holds rows from before them: on a scratch database
of their own (migrating the shared test database backwards would disturb every other test)."""

import subprocess
import sys
import textwrap
import uuid

import psycopg
from django.conf import settings

from tests.support.host import ROOT
from tests.support.workers import service_env

SCRIPT = textwrap.dedent(
    """
    import django
    django.setup()
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    def migrate_to(target):
        executor = MigrationExecutor(connection)
        executor.migrate([target])
        return MigrationExecutor(connection).loader.project_state([target]).apps

    old = migrate_to(("sentinai", "0003_stream_outbox"))
    tenant = old.get_model("sentinai", "Tenant").objects.create(id="acme", name="Acme", domain_pack="finance")
    keys = old.get_model("sentinai", "TenantAPIKey").objects
    keys.create(id="k1", prefix="k1pref", hashed_key="x", name="gateway", tenant=tenant, is_operator=False)
    keys.create(id="k2", prefix="k2pref", hashed_key="x", name="ops-desk", tenant=tenant, is_operator=True)
    new = migrate_to(("sentinai", "0004_api_key_scopes"))
    for key in new.get_model("sentinai", "TenantAPIKey").objects.order_by("id"):
        print("KEY", key.id, ",".join(key.scopes))
    back = migrate_to(("sentinai", "0003_stream_outbox"))
    for key in back.get_model("sentinai", "TenantAPIKey").objects.order_by("id"):
        print("BACK", key.id, key.is_operator)
    """
)


def _admin(statement: str) -> None:
    owner = settings.DATABASES["owner"]
    with psycopg.connect(
        host=owner["HOST"], port=owner["PORT"], user=owner["USER"], dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(statement)


def test_api_keys_of_before_scopes_keep_their_powers_minus_writing_for_other_tenants():
    owner = settings.DATABASES["owner"]
    name = f"test_sentinai_migrations_{uuid.uuid4().hex[:8]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        url = f"postgres://{owner['USER']}@{owner['HOST']}:{owner['PORT']}/{name}"
        env = service_env(DATABASE_URL=url, DATABASE_OWNER_URL=url, DJANGO_SETTINGS_MODULE="config.settings.local")
        result = subprocess.run(
            [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
        )
        assert result.returncode == 0, result.stderr[-3000:]
        lines = [line for line in result.stdout.splitlines() if line.startswith(("KEY", "BACK"))]
        assert lines == [
            "KEY k1 ingest,read,approve",
            "KEY k2 ingest,read,approve,operate",
            "BACK k1 False",
            "BACK k2 True",
        ]
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
