"""`migrate`, run as the schema owner when DATABASE_OWNER_URL is configured.

The application role (DATABASE_URL) is bound by row-level security and owns nothing; schema changes
are made by the owner role, and the application role's grants are refreshed afterwards. Where no owner
is configured, migrations run on the application's connection without its session timeouts
(DB_STATEMENT_TIMEOUT_MS, config/settings/base.py): a migration that rewrites a large table may
rightly take longer than any request.
"""

from django.core.management.commands.migrate import Command as DjangoMigrateCommand
from django.db import DEFAULT_DB_ALIAS, connections


class Command(DjangoMigrateCommand):
    def handle(self, *args, **options):
        if options["database"] == DEFAULT_DB_ALIAS and "owner" in connections.databases:
            options["database"] = "owner"
        connection = connections[options["database"]]
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET statement_timeout = 0")
                cursor.execute("SET idle_in_transaction_session_timeout = 0")
        return super().handle(*args, **options)
