"""Settings shared by every environment. Every value comes from the environment (12-factor).

The defaults describe the embedded default (`make run`): a SQLite file under var/, the in-process
broker and the local-memory cache, so a fresh machine needs nothing but Python. Setting DATABASE_URL,
CELERY_BROKER_URL and REDIS_URL switches to PostgreSQL, RabbitMQ and Redis with the same code.
"""

import os
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# Local state of the embedded default: the SQLite file, demo keys, the beat schedule.
VAR_DIR = Path(env.str("SENTINAI_VAR_DIR", default=str(BASE_DIR / "var")))

SECRET_KEY = env.str("SECRET_KEY", default="insecure-dev-only-secret-key-change-me")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])

INSTALLED_APPS = [
    # sentinai first so its management commands (migrate) take precedence over Django's.
    "sentinai",
    "sentinai.apps.SentinaiAdminConfig",  # django.contrib.admin, with SentinAI's admin site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    # Swagger UI and ReDoc as static files of the project: /api/docs/ works with no internet access.
    "drf_spectacular_sidecar",
    "django_filters",
    "django_celery_results",
    "pgtrigger",
    "exceptions_app",
    "playbooks_app",
    "tools_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (the admin's, the API docs') from the application server itself: gunicorn in
    # `make stack` and compose, with no web server in front.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "sentinai.tenancy.scope.AdminScopeMiddleware",
    "sentinai.kernel.logs.RequestContextMiddleware",
    "sentinai.kernel.metrics.RequestMetricsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# DATABASE_URL is the role the application runs as. On PostgreSQL that role is bound by row-level
# security; DATABASE_OWNER_URL (optional) is the role that owns the schema and runs migrations.
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'sentinai.sqlite3'}"),
}
if env.str("DATABASE_OWNER_URL", default=""):
    DATABASES["owner"] = env.db("DATABASE_OWNER_URL")

DB_APP_ROLE = env.str("DB_APP_ROLE", default="sentinai_app")
# The role of the processes that work across tenants (API operator reads and admin, scheduler, SLA
# monitor, dead-letter consumer, relays): only for it does the all-tenants scope show every tenant.
# Agent workers connect as DB_APP_ROLE and cannot widen their scope (docs/security.md).
DB_PLATFORM_ROLE = env.str("DB_PLATFORM_ROLE", default="sentinai_platform")


def _tune_database(db: dict, alias: str) -> None:
    engine = db["ENGINE"]
    if engine.endswith("sqlite3"):
        # One writer at a time; IMMEDIATE takes the write lock at BEGIN so concurrent
        # transactions queue on the busy timeout instead of failing on lock upgrade.
        db.setdefault("OPTIONS", {}).update(
            {
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            }
        )
    elif "postgresql" in engine:
        db["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=300)
        db["CONN_HEALTH_CHECKS"] = True
        db.setdefault("OPTIONS", {}).setdefault("application_name", "sentinai")
        # Server-side prepared statements for the hot path's set-based SQL (sentinai.kernel.bulk: fixed
        # text, parameters bound by the server), after this many executions on a connection: each is
        # then parsed and planned once per connection instead of at every batch. Django turns them off
        # (for connection poolers in transaction mode); behind such a pooler without prepared-statement
        # support set DB_PREPARE_THRESHOLD=0 (docs/runbook.md). The ORM's own queries bind client-side
        # and are never prepared.
        threshold = env.int("DB_PREPARE_THRESHOLD", default=5)
        db["OPTIONS"].setdefault("prepare_threshold", threshold if threshold > 0 else None)
        timeouts = _session_timeouts() if alias != "owner" else ""
        if timeouts:
            db["OPTIONS"].setdefault("options", timeouts)


def _session_timeouts() -> str:
    """libpq `options` bounding the application's sessions (API, agents, scheduler, relays; never the
    schema owner's migrations): a statement that runs longer than DB_STATEMENT_TIMEOUT_MS is cancelled,
    and a session left idle inside a transaction longer than DB_IDLE_IN_TRANSACTION_TIMEOUT_MS is ended
    by the server. Either way the batch's transaction rolls back, the worker sees a database error and
    runs the batch again with backoff (sentinai/pipeline/tasks.py), so a batch stuck in the database
    holds its agent and its locks for seconds, not until Celery's time limit. 0 leaves that bound to
    the server (the role's or database's setting); with both 0 no `options` are sent, which a pooler
    that refuses the startup parameter needs (docs/runbook.md)."""
    bounds = {
        "statement_timeout": env.int("DB_STATEMENT_TIMEOUT_MS", default=30_000),
        "idle_in_transaction_session_timeout": env.int("DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", default=60_000),
    }
    return " ".join(f"-c {name}={ms}" for name, ms in bounds.items() if ms > 0)


for _alias, _db in DATABASES.items():
    _tune_database(_db, _alias)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Admin logins (manage.py create_operator): long, not common, not numeric, not like the user's name.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Cache / Redis -------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Celery --------------------------------------------------------------------------------
# Queue, exchange and route definitions live in config/routing.py; config/celery.py applies them.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="memory://localhost/")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="django-db")
CELERY_BROKER_USE_SSL = env.bool("CELERY_BROKER_USE_SSL", default=False)
# Task events (received/started/succeeded, three broker messages per batch) cost ~1 ms of CPU per batch
# at small batches; off, as Celery's default. Flower switches them on in the workers while it runs.
CELERY_WORKER_SEND_TASK_EVENTS = env.bool("SENTINAI_CELERY_TASK_EVENTS", default=False)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
# RabbitMQ quorum-queue delivery limit: a message redelivered more often (a batch that keeps
# killing its worker) is dead-lettered to the `dead_letter` queue.
BROKER_DELIVERY_LIMIT = env.int("BROKER_DELIVERY_LIMIT", default=10)

# --- Kafka (the event stream) -------------------------------------------------------------
# Comma-separated host:port list; empty = no Kafka (the embedded default). Managed Kafka-protocol
# services (Azure Event Hubs, AWS MSK) take SASL/TLS options through KAFKA_CONFIG, a JSON object of
# librdkafka properties merged over the defaults, e.g. {"security.protocol": "SASL_SSL", ...}.
KAFKA_BOOTSTRAP_SERVERS = env.str("KAFKA_BOOTSTRAP_SERVERS", default="")
KAFKA_CONFIG = env.json("KAFKA_CONFIG", default={})
# The common managed-Kafka settings by name (merged under KAFKA_CONFIG): SASL_SSL + PLAIN for Azure Event
# Hubs, SASL_SSL + SCRAM-SHA-512 for AWS MSK (README, "Kafka").
KAFKA_SECURITY_PROTOCOL = env.str("KAFKA_SECURITY_PROTOCOL", default="")
KAFKA_SASL_MECHANISM = env.str("KAFKA_SASL_MECHANISM", default="")
KAFKA_SASL_USERNAME = env.str("KAFKA_SASL_USERNAME", default="")
KAFKA_SASL_PASSWORD = env.str("KAFKA_SASL_PASSWORD", default="")
KAFKA_SSL_CA_LOCATION = env.str("KAFKA_SSL_CA_LOCATION", default="")

# --- SentinAI platform ---------------------------------------------------------------------
SENTINAI = {
    # Events per broker message (the unit of transport).
    "BATCH_SIZE": env.int("SENTINAI_BATCH_SIZE", default=500),
    # Per agent, instead of BATCH_SIZE: {"tool": 4}. An agent whose workers hold few calls in flight (a
    # slow tool) needs small messages, or one worker holds a backlog its idle peers cannot take
    # (docs/performance.md, "Horizontal scale"). Every process must be given the same values.
    "AGENT_BATCH_SIZES": env.json("SENTINAI_AGENT_BATCH_SIZES", default={}),
    # Outbox rows older than this that were never published are republished by the relay.
    "OUTBOX_GRACE_SECONDS": env.float("SENTINAI_OUTBOX_GRACE_SECONDS", default=5.0),
    # A published outbox row not consumed this long after its send is sent again (a broker lost it, or it
    # waits in a backlog: consumers apply it once), whatever its queue holds; each later re-send waits
    # twice as long as the one before (at most 32x).
    "OUTBOX_REDELIVER_SECONDS": env.float("SENTINAI_OUTBOX_REDELIVER_SECONDS", default=120.0),
    # How often the scheduler relays the outbox and re-offers due retries and parked events.
    "SCHEDULER_TICK_SECONDS": env.float("SENTINAI_SCHEDULER_TICK_SECONDS", default=1.0),
    "SLA_SCAN_SECONDS": env.float("SENTINAI_SLA_SCAN_SECONDS", default=5.0),
    # How often the in-flight counts of admission control are re-counted from the database.
    "ADMISSION_RECONCILE_SECONDS": env.float("SENTINAI_ADMISSION_RECONCILE_SECONDS", default=60.0),
    "SLA_IMMINENT_FRACTION": env.float("SENTINAI_SLA_IMMINENT_FRACTION", default=0.8),
    # Parked events (waiting for a predecessor) are re-offered after this delay as a safety net.
    "PARKED_RECHECK_SECONDS": env.float("SENTINAI_PARKED_RECHECK_SECONDS", default=10.0),
    # Retry policy defaults; override per agent in RETRY_POLICIES.
    "RETRY_BASE_SECONDS": env.float("SENTINAI_RETRY_BASE_SECONDS", default=2.0),
    "RETRY_FACTOR": env.float("SENTINAI_RETRY_FACTOR", default=2.0),
    "RETRY_CAP_SECONDS": env.float("SENTINAI_RETRY_CAP_SECONDS", default=300.0),
    "RETRY_MAX_ATTEMPTS": env.int("SENTINAI_RETRY_MAX_ATTEMPTS", default=5),
    "RETRY_POLICIES": env.json("SENTINAI_RETRY_POLICIES", default={}),
    "DOMAIN_PACK_DIRS": env.list("SENTINAI_DOMAIN_PACK_DIRS", default=[str(BASE_DIR / "domain_packs")]),
    "MAX_PAYLOAD_BYTES": env.int("SENTINAI_MAX_PAYLOAD_BYTES", default=256 * 1024),
    # Tool calls a tool worker's batch makes at once (a downstream that takes one call at a time: 1).
    "TOOL_PARALLEL_CALLS": env.int("SENTINAI_TOOL_PARALLEL_CALLS", default=8),
    # Swap an agent's implementation: {"triage": "module:attribute"} (benchmarks, framework tests).
    "AGENT_IMPLEMENTATIONS": env.json("SENTINAI_AGENT_IMPLEMENTATIONS", default={}),
    # A worker that receives a small batch takes the messages waiting behind it (sentinai/pipeline/coalesce.py).
    "COALESCE": env.bool("SENTINAI_COALESCE", default=True),
    # After finding a queue empty, a worker process does not fetch from it again for this long.
    "COALESCE_IDLE_SECONDS": env.float("SENTINAI_COALESCE_IDLE_SECONDS", default=0.1),
    # Lanes (config/routing.py): each laned agent's queues <agent>.0 … <agent>.<LANES-1>, tenants spread
    # over them by a stable hash, plus <agent>.tenant-<id> for each tenant listed in DEDICATED_LANES. Every
    # process (API, workers, beat) must be given the same values.
    "LANES": env.int("SENTINAI_LANES", default=4),
    "DEDICATED_LANES": frozenset(env.list("SENTINAI_DEDICATED_LANES", default=[])),
    # Metrics carry no tenant names unless asked: SENTINAI_METRICS_TENANTS lists the tenants broken out
    # by label (the rest count under "-"); SENTINAI_METRICS_TENANT_LABELS=true labels every tenant.
    "METRICS_TENANT_LABELS": env.bool("SENTINAI_METRICS_TENANT_LABELS", default=False),
    "METRICS_TENANTS": frozenset(env.list("SENTINAI_METRICS_TENANTS", default=[])),
    # How long a worker keeps a batch while the database is unreachable before handing it back.
    "DB_OUTAGE_BUDGET_SECONDS": env.float("SENTINAI_DB_OUTAGE_BUDGET_SECONDS", default=120.0),
    # The Kafka event stream: every recorded event, to a topic per tenant, keyed by exception id. On
    # whenever a Kafka cluster is configured; the outbox rows it needs are written only then.
    "KAFKA_STREAM": env.bool("SENTINAI_KAFKA_STREAM", default=bool(KAFKA_BOOTSTRAP_SERVERS)),
    "KAFKA_TOPIC_TEMPLATE": env.str("SENTINAI_KAFKA_TOPIC_TEMPLATE", default="sentinai.events.{tenant}"),
    "KAFKA_TOPIC_PARTITIONS": env.int("SENTINAI_KAFKA_TOPIC_PARTITIONS", default=6),
    "KAFKA_TOPIC_REPLICATION": env.int("SENTINAI_KAFKA_TOPIC_REPLICATION", default=1),
    # Create a tenant's topic on first use; off where the cluster forbids it (topics made by its owners).
    "KAFKA_CREATE_TOPICS": env.bool("SENTINAI_KAFKA_CREATE_TOPICS", default=True),
    # Events per relay round and shard (one Kafka flush each).
    "KAFKA_RELAY_BATCH": env.int("SENTINAI_KAFKA_RELAY_BATCH", default=5000),
    # A relay round that found less than a batch starts the next one this long after its own start, so
    # that a keeping-up relay's rounds gather more events each (its queries and flush are per round and
    # shard, not per event); the stream's lag grows by at most this. 0: rounds back to back.
    "KAFKA_RELAY_LINGER_SECONDS": env.float("SENTINAI_KAFKA_RELAY_LINGER_SECONDS", default=1.0),
    # Source systems publishing exceptions: {"topic": "tenant_id"} (config, not the message, names the tenant).
    "KAFKA_INGEST_TOPICS": env.json("SENTINAI_KAFKA_INGEST_TOPICS", default={}),
    "KAFKA_INGEST_GROUP": env.str("SENTINAI_KAFKA_INGEST_GROUP", default="sentinai-ingest"),
    # seed_demo (make run, make stack) creates an admin login `operator` with a generated password kept in
    # var/demo-operator.json. Always off under production settings.
    "DEMO_LOGIN": env.bool("SENTINAI_DEMO_LOGIN", default=True),
}

# --- REST framework ------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["sentinai.api.renderers.OrjsonRenderer"],
    "DEFAULT_PARSER_CLASSES": ["sentinai.api.parsers.BoundedJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "sentinai.api.problems.exception_handler",
}
# A batch of 1,000 exceptions fits; larger request bodies are refused with 413 before parsing.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=16 * 1024 * 1024)
SPECTACULAR_SETTINGS = {
    "TITLE": "SentinAI API",
    "DESCRIPTION": "Command and query APIs of the SentinAI exception-handling platform.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "APPEND_COMPONENTS": {
        "securitySchemes": {
            "ApiKey": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <api key>"}
        }
    },
    "SECURITY": [{"ApiKey": []}],
    # Served from this project's static files (drf-spectacular-sidecar), never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "AUTHENTICATION_WHITELIST": [],
    # Choice fields take `.values` (value == label), so the overrides name the value lists.
    "ENUM_NAME_OVERRIDES": {
        "ExceptionStatusEnum": [
            "received",
            "normalized",
            "triaged",
            "in_progress",
            "awaiting_approval",
            "resolved",
            "escalated",
            "invalid",
        ],
        "PlaybookRunStatusEnum": [
            "running",
            "awaiting_approval",
            "completed",
            "failed",
            "rejected",
            "escalated",
            "superseded",
            "none",
        ],
        "BatchItemStatusEnum": ["accepted", "deduplicated", "rejected"],
    },
}

# Every API and worker process of a host writes its samples here; GET /metrics merges them.
# Empty it when the whole host's platform (re)starts (make stack, make run do).
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default=str(VAR_DIR / "prometheus"))
os.makedirs(PROMETHEUS_MULTIPROC_DIR, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_MULTIPROC_DIR

# --- Misc ----------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
# `collectstatic` writes here (the container image does); the embedded server and `make stack` serve the
# apps' static folders directly (WHITENOISE_USE_FINDERS), so they need no collect step.
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=True)
try:  # WhiteNoise warns about a missing STATIC_ROOT in every process
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
except OSError:
    pass

# --- Logs and metrics ----------------------------------------------------------------------
# JSON lines (sentinai/kernel/logs.py) on stderr, or LOG_FORMAT=plain for humans; LOG_FILE adds a file.
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="json")
LOG_FILE = env.str("LOG_FILE", default="")
_log_handlers = {
    "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]},
}
if LOG_FILE:
    _log_handlers["file"] = {
        "class": "logging.handlers.WatchedFileHandler",
        "filename": LOG_FILE,
        "formatter": "json",
        "filters": ["context"],
    }
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "sentinai.kernel.logs.ContextFilter"}},
    "formatters": {
        "json": {"()": "sentinai.kernel.logs.Formatter"},
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": _log_handlers,
    "root": {"handlers": list(_log_handlers), "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "celery": {"level": LOG_LEVEL},
        # One line per task received/succeeded is noise at batch rates; failures still log.
        "celery.worker.strategy": {"level": "WARNING"},
        "celery.app.trace": {"level": "WARNING"},
        "celery.beat": {"level": "WARNING"},
    },
}
