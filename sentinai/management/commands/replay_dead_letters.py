from django.core.management.base import BaseCommand, CommandError

from sentinai.ops.deadletters import NotReplayable, replay, select_all_tenants


class Command(BaseCommand):
    help = "Replay dead letters: their events run again from their agent."

    def add_arguments(self, parser):
        parser.add_argument("--id", type=int, action="append", dest="ids", help="dead letter id (repeatable)")
        parser.add_argument("--agent", help="only dead letters of this agent")
        parser.add_argument("--tenant", help="only dead letters of this tenant")
        parser.add_argument("--all", action="store_true", help="every open dead letter")

    def handle(self, *args, **options):
        if not (options["ids"] or options["agent"] or options["tenant"] or options["all"]):
            raise CommandError("say which dead letters: --id, --agent, --tenant or --all")
        letters = select_all_tenants(ids=options["ids"], agent=options["agent"], tenant=options["tenant"])
        if not letters:
            self.stdout.write("no open dead letters match")
            return
        replayable = [letter for letter in letters if letter.tenant_id and letter.event_ids]
        for letter in letters:
            if letter not in replayable:
                self.stderr.write(f"dead letter {letter.pk} holds no events (undecodable message); discard it instead")
        try:
            count = replay(replayable, actor="manage.py")
        except NotReplayable as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"replayed {count} dead letter(s)")
