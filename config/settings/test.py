"""pytest settings: the base settings against the real local services (scripts/services.sh).

Any variable already set in the environment wins, so CI can point the suite elsewhere.
"""

import os
import tempfile

# The test process plays the operator and the platform (it reads across tenants to assert); the
# processes it starts connect as the role production gives them (tests/support/workers.py).
os.environ.setdefault("DATABASE_URL", "postgres://sentinai_platform@127.0.0.1:5432/sentinai")
os.environ.setdefault("DATABASE_OWNER_URL", "postgres://sentinai@127.0.0.1:5432/sentinai")
os.environ.setdefault("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/sentinai_test")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
# One metrics directory per test session, shared by the workers it starts.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="sentinai-metrics-"))

from .base import *  # noqa: F403
from .base import DATABASES

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tests own the test database's name; the owner alias creates and migrates it (tests/conftest.py).
for _alias in DATABASES:
    DATABASES[_alias]["TEST"] = {"NAME": os.environ.get("SENTINAI_TEST_DB", "test_sentinai")}
    DATABASES[_alias]["CONN_MAX_AGE"] = 0
