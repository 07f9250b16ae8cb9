from django.conf import settings
from django.core.management.base import BaseCommand

from sentinai.eventstore.catalogue_doc import render


class Command(BaseCommand):
    help = "Write docs/events.md from the event catalogue in sentinai/eventstore/events.py."

    def handle(self, *args, **options):
        path = settings.BASE_DIR / "docs" / "events.md"
        path.write_text(render())
        self.stdout.write(f"wrote {path}")
