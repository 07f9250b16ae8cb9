"""The machine the tests run on: where the repository is, a free port, and the environment of a
platform process configured with no services (the embedded default)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What points a process at PostgreSQL, RabbitMQ and Redis; without them it runs embedded.
SERVICE_VARIABLES = ("DATABASE_URL", "DATABASE_OWNER_URL", "CELERY_BROKER_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")


# Prefixes of every variable that configures a platform process (services, settings, metrics, stream).
PLATFORM_PREFIXES = ("DATABASE_", "CELERY_", "REDIS_", "DJANGO_", "PROMETHEUS", "SENTINAI_", "KAFKA_")


def unconfigured_env() -> dict[str, str]:
    """This environment less every variable that configures a platform process: the base of a
    process that is then given its own services."""
    return {k: v for k, v in os.environ.items() if not k.startswith(PLATFORM_PREFIXES)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def embedded_env(**extra: str) -> dict[str, str]:
    """This environment less the service variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
    env.update(extra)
    return env
