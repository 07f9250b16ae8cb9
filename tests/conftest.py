"""Test database and broker set-up, and the fixtures shared by test modules.

The schema owner creates and migrates the test database. The test process runs as the platform role
(row-level-security-bound, and the one role that may cross tenants: the tests play operator); every
subprocess connects as the role production gives it (tests/support/workers.py): agent workers as the
tenant-bound application role, platform workers and relays as the platform role. Integration tests run
real Celery workers (tests/support/workers.py) on the RabbitMQ vhost of CELERY_BROKER_URL
(`sentinai_test` unless the environment names another, see config/settings/test.py).
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connections

from config import routing
from config.celery import app as celery_app
from sentinai.eventstore import outbox
from tests.support.api import forget_caches, tenant_with_key


@pytest.fixture(scope="session")
def django_db_setup(request, django_test_environment, django_db_blocker, django_db_keepdb):
    owner = connections["owner"]
    default = connections["default"]
    with django_db_blocker.unblock():
        old_name = owner.settings_dict["NAME"]
        test_name = owner.creation.create_test_db(
            verbosity=0, autoclobber=True, keepdb=django_db_keepdb, serialize=False
        )
        default.creation.set_as_test_mirror(owner.settings_dict)
        default.close()
        with owner.cursor() as cursor:
            # Test isolation between transactional tests empties tables with TRUNCATE; production
            # never grants it (the event store is append-only).
            for role in (settings.DB_APP_ROLE, settings.DB_PLATFORM_ROLE):
                cursor.execute(f'GRANT TRUNCATE ON ALL TABLES IN SCHEMA public TO "{role}"')
    yield test_name
    with django_db_blocker.unblock():
        for conn in connections.all():
            conn.close()
        if not django_db_keepdb:
            owner.creation.destroy_test_db(old_name, verbosity=0, keepdb=False)


@pytest.fixture
def purge_broker():
    """Empty every work queue and the DLQ of the test vhost (declaring them if needed)."""
    # The test process sends no heartbeats on its pooled publishing connections, so the broker closes
    # one left idle past the heartbeat timeout (by a long test before), and the fast path's first
    # publish would then fail and leave the batch to a relay that no test runs: start with new ones.
    outbox.reset_broker_pools()
    with celery_app.connection_for_write() as conn:
        routing.declare_topology(conn)
        channel = conn.default_channel
        for queue in (*routing.work_queues(), routing.dead_letter_queue()):
            channel.queue_purge(queue.name)
    yield


@pytest.fixture
def log_dir(tmp_path):
    return tmp_path


@pytest.fixture
def fresh_caches():
    """The API caches verified keys and tenant rows in process: a test must not meet another's."""
    forget_caches()
    yield
    forget_caches()


@pytest.fixture
def acme():
    """Tenant `acme` and an API client holding its key."""
    return tenant_with_key("acme")


@pytest.fixture(scope="session", autouse=True)
def _flush_survives_busy_workers():
    """Transactional tests empty the tables with one TRUNCATE at teardown. Workers of a module-scoped
    platform (and its beat) may still be committing then, and PostgreSQL can pick the TRUNCATE as a
    deadlock victim: run it again rather than fail the test that just passed."""
    import time

    from django.core.management.base import CommandError
    from django.test import TransactionTestCase

    original = TransactionTestCase._fixture_teardown

    def teardown(self):
        for attempt in range(5):
            try:
                return original(self)
            except CommandError as exc:
                if "deadlock" not in str(exc.__cause__ or exc) or attempt == 4:
                    raise
                time.sleep(0.2)

    TransactionTestCase._fixture_teardown = teardown
    yield
    TransactionTestCase._fixture_teardown = original
