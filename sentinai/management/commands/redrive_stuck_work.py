from django.core.management.base import BaseCommand

from sentinai.ops import stuck


class Command(BaseCommand):
    help = "List work waiting longer than a threshold (outbox, parked events, running tool calls) and re-drive it."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=float, default=stuck.DEFAULT_THRESHOLD_SECONDS, help="seconds")
        parser.add_argument("--dry-run", action="store_true", help="list only")

    def handle(self, *args, **options):
        older = options["older_than"]
        found = [(kind, kind.find(older)) for kind in stuck.kinds()]
        self.stdout.write(f"older than {older:g}s: " + ", ".join(f"{len(rows)} {kind.label}" for kind, rows in found))
        for kind, rows in found:
            for row in rows:
                self.stdout.write(f"  {kind.describe(row)}")
        if options["dry_run"]:
            return
        self.stdout.write("re-driven: " + ", ".join(f"{kind.redrive(rows)} {kind.label}" for kind, rows in found))
