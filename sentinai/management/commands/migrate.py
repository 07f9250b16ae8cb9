"""`migrate`, run as the schema owner when DATABASE_OWNER_URL is configured.

The application role (DATABASE_URL) is bound by row-level security and owns nothing; schema changes
are made by the owner role, and the application role's grants are refreshed afterwards.
"""

from django.core.management.commands.migrate import Command as DjangoMigrateCommand
from django.db import DEFAULT_DB_ALIAS, connections


class Command(DjangoMigrateCommand):
    def handle(self, *args, **options):
        if options["database"] == DEFAULT_DB_ALIAS and "owner" in connections.databases:
            options["database"] = "owner"
        return super().handle(*args, **options)
