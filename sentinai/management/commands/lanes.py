"""The agents' lanes: which one a tenant takes, how deep each is, and moving the messages a pre-lanes
deployment left in its single agent queues (docs/runbook.md, "Lanes")."""

from django.core.management.base import BaseCommand

from config import routing
from sentinai.ops import lanes


class Command(BaseCommand):
    help = "List the lanes, deepest first (--tenant: that tenant's lanes; --move-legacy: empty the pre-lanes queues)."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="print the queues that carry this tenant's batches, and stop")
        parser.add_argument("--top", type=int, default=0, help="only the N deepest lanes")
        parser.add_argument(
            "--move-legacy", action="store_true", help="move messages of the old <agent> queues to their lanes"
        )

    def handle(self, *args, tenant=None, top=0, move_legacy=False, **options):
        if tenant:
            for agent in routing.LANED_AGENTS:
                self.stdout.write(f"{agent}\t{routing.lane_queue(agent, tenant)}")
            return
        if move_legacy:
            moved = lanes.move_legacy_all_tenants()
            for queue, count in moved.items():
                self.stdout.write(f"{queue}: moved {count} messages to their lanes")
            if not moved:
                self.stdout.write("no pre-lanes agent queue exists")
            return
        rows = lanes.lane_depths_all_tenants()
        self.stdout.write("queue\tready\tconsumers")
        for lane in rows[:top] if top else rows:
            self.stdout.write(f"{lane.queue}\t{lane.ready}\t{lane.consumers}")
