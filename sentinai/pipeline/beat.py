"""celery beat's scheduler, with outages reported the platform's way: one line when the broker stops
taking beat's messages and one when it takes them again (sentinai.dependencies), instead of a
traceback per periodic task per tick. A tick missed in an outage is not sent later: every periodic
task is a sweep that the next tick does in full."""

from __future__ import annotations

import logging

from celery.beat import PersistentScheduler, SchedulingError

from sentinai.kernel import dependencies

logger = logging.getLogger(__name__)


class Scheduler(PersistentScheduler):
    def apply_entry(self, entry, producer=None):
        try:
            self.apply_async(entry, producer=producer, advance=False)
        except SchedulingError as exc:
            cause = exc.__cause__ or exc.__context__ or exc
            if isinstance(cause, dependencies.broker_errors()):
                dependencies.down("broker", cause, consequence="beat skips its ticks until it is back")
                return
            logger.exception("beat could not send %s", entry.task)
        else:
            dependencies.up("broker")
            logger.debug("beat sent %s", entry.task)

    def _ensure_connected(self):
        """Connect with kombu's bounded backoff (at most 30 s between attempts), one line per outage."""

        def report(exc, interval):
            dependencies.down("broker", exc, consequence="beat waits for it (retrying with backoff)")

        connection = self.connection.ensure_connection(
            report, self.app.conf.broker_connection_max_retries, interval_start=1, interval_step=2, interval_max=30
        )
        dependencies.up("broker")
        return connection
