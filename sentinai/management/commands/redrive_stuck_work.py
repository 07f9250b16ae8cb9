from django.core.management.base import BaseCommand

from sentinai.ops import stuck


class Command(BaseCommand):
    help = "List work waiting longer than a threshold (outbox, parked events, running tool calls) and re-drive it."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=float, default=stuck.DEFAULT_THRESHOLD_SECONDS, help="seconds")
        parser.add_argument("--dry-run", action="store_true", help="list only")

    def handle(self, *args, **options):
        older = options["older_than"]
        batches = stuck.stuck_outbox_all_tenants(older)
        parked = stuck.stuck_parked_all_tenants(older)
        running = stuck.stuck_tool_executions_all_tenants(older)
        self.stdout.write(
            f"older than {older:g}s: {len(batches)} outbox batches, {len(parked)} parked events, "
            f"{len(running)} tool executions running"
        )
        for row in batches:
            self.stdout.write(
                f"  outbox #{row.id} {row.tenant_id} -> {row.queue}: {len(row.event_ids)} events, created {row.created_at:%Y-%m-%d %H:%M:%S}"
            )
        for row in parked:
            self.stdout.write(f"  parked {row.consumer} {row.event_id} ({row.tenant_id}) waits for {row.waiting_for}")
        for row in running:
            self.stdout.write(
                f"  tool {row.tool_name} {row.id} ({row.tenant_id}) running since {row.updated_at:%Y-%m-%d %H:%M:%S}"
            )
        if options["dry_run"]:
            return
        self.stdout.write(
            f"re-driven: {stuck.redrive_outbox_all_tenants([r.id for r in batches])} batches, "
            f"{stuck.reoffer_parked_all_tenants([r.id for r in parked])} parked events, "
            f"{stuck.redrive_tool_executions(running)} tool executions"
        )
