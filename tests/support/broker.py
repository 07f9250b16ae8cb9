"""The test vhost of the real RabbitMQ, through its command-line tool."""

from __future__ import annotations

import subprocess

from django.conf import settings


def rabbitmqctl(*args) -> str:
    vhost = settings.CELERY_BROKER_URL.rsplit("/", 1)[-1] or "/"
    return subprocess.run(
        ["rabbitmqctl", "-q", "--no-table-headers", "-p", vhost, *args], capture_output=True, text=True, check=True
    ).stdout
