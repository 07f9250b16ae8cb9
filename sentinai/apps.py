from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.db.models.signals import post_migrate


def _grant_app_role(sender, using, **kwargs):
    from django.conf import settings
    from django.db import connections

    from sentinai.tenancy.rls import grant_app_role

    connection = connections[using]
    if connection.vendor == "postgresql":
        grant_app_role(connection, settings.DB_APP_ROLE)
        grant_app_role(connection, settings.DB_PLATFORM_ROLE)


def _database_reached(sender, connection, **kwargs):
    from sentinai.kernel import dependencies

    dependencies.up("database")


def _probe_database() -> None:
    """Raises unless PostgreSQL accepts a connection now (runs in the probe's own thread, whose
    connection it closes)."""
    from django.db import connections

    connection = connections["default"]
    try:
        connection.ensure_connection()
    finally:
        connection.close()


def _probe_broker() -> None:
    """Raises unless the broker accepts a connection now (a connection of the probe's own)."""
    from config.celery import app

    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1)


class SentinaiConfig(AppConfig):
    name = "sentinai"
    verbose_name = "SentinAI platform"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from sentinai.kernel import dependencies, tracing

        post_migrate.connect(_grant_app_role, sender=self)
        # A new database connection is the proof that an outage is over (reported once per process).
        connection_created.connect(_database_reached, dispatch_uid="sentinai.dependencies.database")
        # After an outage noted by any code path, a probe thread finds out when it is over.
        dependencies.probe_with("database", _probe_database)
        dependencies.probe_with("broker", _probe_broker)
        # Before the WSGI handler loads its middleware (the Django instrumentation adds one).
        tracing.configure()


class SentinaiAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with SentinAI's admin site (titles, the operations overview)."""

    default = False
    default_site = "sentinai.admin_site.SentinaiAdminSite"
