import json
import os

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection

from config.celery import app as celery_app
from sentinai.ops.embedded import Platform, install_signal_handlers


class Command(BaseCommand):
    help = "Run the API, every agent consumer and the scheduler in this one process (the embedded default)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--concurrency", type=int, default=4, help="agent worker threads")

    def handle(self, *args, **options):
        platform = Platform(host=options["host"], port=options["port"], concurrency=options["concurrency"])
        platform.start()
        install_signal_handlers(platform)
        host = options["host"] if options["host"] not in ("0.0.0.0", "::") else "127.0.0.1"
        url = f"http://{host}:{options['port']}"
        transport = celery_app.connection_for_write().transport_cls
        self.stdout.write(
            f"SentinAI is running at {url}  (database: {connection.vendor}, broker: {transport})\n"
            f"  health   {url}/api/health\n  API docs {url}/api/docs/\n  admin    {url}/admin/\n"
        )
        keys_path = settings.VAR_DIR / "demo-keys.json"
        if keys_path.exists():
            self.stdout.write("Demo API keys (Authorization: Bearer <key>):")
            for label, key in json.loads(keys_path.read_text()).items():
                self.stdout.write(f"  {label:28} {key}")
        login_path = settings.VAR_DIR / "demo-operator.json"
        if settings.SENTINAI.get("DEMO_LOGIN") and login_path.exists():
            login = json.loads(login_path.read_text())
            self.stdout.write(
                f"Admin: {url}/admin/  user {login['username']}  password {login['password']}\n"
                f"  (the demo login of `make run`; real operators: manage.py create_operator NAME)"
            )
        self.stdout.write("Press Ctrl-C to stop.")
        self.stdout.flush()
        platform.serve()
        self.stdout.write("stopped")
