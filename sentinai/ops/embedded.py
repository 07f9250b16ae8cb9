"""The whole platform in one process: the API, every agent consumer and the scheduler.

This is the embedded default (`make run`): with the defaults it runs on a SQLite file and kombu's
in-process broker, so it needs nothing but Python; with DATABASE_URL / CELERY_BROKER_URL /
REDIS_URL set it runs the same threads against PostgreSQL, RabbitMQ and Redis.

The in-process broker forgets its messages when the process dies. The outbox does not: rows stay
until the consuming agent deletes them, and at start-up every row still there is owed again, so a
killed process loses nothing.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from dataclasses import dataclass

from celery.apps.worker import Worker  # noqa: F401  (sets up worker signals/logging defaults)
from celery.beat import EmbeddedService
from django.conf import settings
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.core.wsgi import get_wsgi_application

from config import routing
from config.celery import app as celery_app
from sentinai.eventstore import outbox

logger = logging.getLogger("sentinai.ops.embedded")


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        logger.debug("%s - %s", self.address_string(), format % args)


@dataclass
class Platform:
    host: str
    port: int
    concurrency: int = 4

    def start(self) -> None:
        self._stopping = threading.Event()
        if celery_app.connection_for_write().transport.driver_type != "amqp":
            owed = outbox.forget_publications_all_tenants()
            if owed:
                logger.info("%d outbox batches from a previous run are owed again", owed)
        self.worker = celery_app.WorkController(
            app=celery_app,
            hostname=f"embedded@{socket.gethostname()}",
            pool_cls="threads",
            concurrency=self.concurrency,
            queues=[q.name for q in routing.work_queues()],
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            loglevel=settings.LOG_LEVEL,
        )
        self.worker_thread = threading.Thread(target=self.worker.start, name="celery-worker", daemon=True)
        self.worker_thread.start()
        schedule = settings.VAR_DIR / "celerybeat-schedule"
        schedule.parent.mkdir(parents=True, exist_ok=True)
        self.beat = EmbeddedService(celery_app, thread=True, schedule_filename=str(schedule))
        self.beat.start()
        handler = StaticFilesHandler(get_wsgi_application())
        self.httpd = ThreadedWSGIServer((self.host, self.port), _QuietHandler, ipv6=":" in self.host)
        self.httpd.daemon_threads = True
        self.httpd.set_app(handler)

    def serve(self) -> None:
        try:
            self.httpd.serve_forever(poll_interval=0.2)
        finally:
            self.stop()

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        logger.info("stopping: scheduler, agents, API")
        self.beat.stop()
        self.worker.stop(in_sighandler=False)
        self.worker_thread.join(timeout=15)
        self.httpd.server_close()


def install_signal_handlers(platform: Platform) -> None:
    def shutdown(signum, frame):
        threading.Thread(target=platform.httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
