# SentinAI everyday targets. The README's two commands are `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
export PORT

# Services of `make stack`: the local ones scripts/services.sh installs and starts, unless these are
# already set in the environment (then the stack uses yours, and services.sh leaves that service alone).
DATABASE_URL            ?= postgres://sentinai_app@127.0.0.1:5432/sentinai
DATABASE_OWNER_URL      ?= postgres://sentinai@127.0.0.1:5432/sentinai
CELERY_BROKER_URL       ?= amqp://guest:guest@127.0.0.1:5672//
REDIS_URL               ?= redis://127.0.0.1:6379/0
KAFKA_BOOTSTRAP_SERVERS ?= 127.0.0.1:9092
# The role of the processes that cross tenants (API, SLA and scheduler workers, dead-letter consumer,
# Kafka relay): DATABASE_URL with the platform role's name unless set (docs/security.md).
PLATFORM_DATABASE_URL   ?= $(subst //sentinai_app,//sentinai_platform,$(DATABASE_URL))

.PHONY: run stack test test-tools lint format migrate services services-stop bench bench-pipeline bench-framework bench-queries bench-queries-ingesting bench-ingest bench-stream bench-scale clean help

help:
	@echo "make run    - the whole platform in one process (SQLite + in-process broker by default)"
	@echo "make test   - the test suite against real PostgreSQL, RabbitMQ, Redis and Kafka (installed if missing)"
	@echo "make stack  - production topology on local services under supervisord: gunicorn, a worker per agent queue, beat, Flower"
	@echo "make services | services-stop - install/start the local services, stop those it started"
	@echo "make bench - the real pipeline behind the HTTP API; bench-framework - pass-through agents"
	@echo "make bench-ingest - command latency (single and batch POSTs) on the make stack topology at 50 % load"
	@echo "make bench-scale - tool throughput with 1, 2, 4, 8 worker processes, and with a second host (netns)"
	@echo "make bench-queries | bench-queries-ingesting - read latency at 1 M exceptions (idle | while ingesting)"
	@echo "make lint | format | migrate | clean"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt $(VENV)/.runtime
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

$(VENV)/.bench: requirements-bench.txt $(VENV)/.dev
	$(BIN)/pip install --quiet -r requirements-bench.txt
	touch $@

run: $(VENV)/.runtime
	@mkdir -p $${SENTINAI_VAR_DIR:-var}
	$(BIN)/python manage.py migrate --noinput -v 0
	$(BIN)/python manage.py seed_demo > /dev/null
	$(BIN)/python manage.py run_embedded --port $(PORT)

services:
	./scripts/services.sh

services-stop:
	./scripts/services-stop.sh

migrate: $(VENV)/.runtime
	$(BIN)/python manage.py migrate --noinput

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(VENV)/.dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The browser tests' Chromium and the alert rules' promtool, from Debian (never a browser download).
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD = 1
test-tools:
	./scripts/test-tools.sh

test: $(VENV)/.dev services test-tools lint
	$(BIN)/pytest

VAR_DIR ?= $(or $(SENTINAI_VAR_DIR),var)
# The runtime (API, workers) never gets the schema owner's credentials: only `migrate` does.
RUNTIME_ENV = env -u DATABASE_OWNER_URL DATABASE_URL=$(DATABASE_URL) PLATFORM_DATABASE_URL=$(PLATFORM_DATABASE_URL) \
	CELERY_BROKER_URL=$(CELERY_BROKER_URL) REDIS_URL=$(REDIS_URL) KAFKA_BOOTSTRAP_SERVERS=$(KAFKA_BOOTSTRAP_SERVERS) SENTINAI_VAR_DIR=$(VAR_DIR) PROMETHEUS_MULTIPROC_DIR=$(VAR_DIR)/prometheus \
	DJANGO_SETTINGS_MODULE=config.settings.local
STACK_ENV = $(RUNTIME_ENV) DATABASE_OWNER_URL=$(DATABASE_OWNER_URL)

stack: $(VENV)/.runtime
	$(STACK_ENV) ./scripts/services.sh
	@mkdir -p $(VAR_DIR) && rm -rf $(VAR_DIR)/prometheus
	$(STACK_ENV) $(BIN)/python manage.py migrate --noinput -v 0
	$(RUNTIME_ENV) $(BIN)/python manage.py seed_demo
	@mkdir -p $(VAR_DIR)/run $(VAR_DIR)/log
	$(BIN)/python scripts/supervision.py render --procfile Procfile --var-dir $(VAR_DIR) > $(VAR_DIR)/supervisord.conf
	@echo "supervisord: each process logs to $(VAR_DIR)/log/<name>.log; $(BIN)/supervisorctl -c $(VAR_DIR)/supervisord.conf status"
	$(RUNTIME_ENV) PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/supervisord -c $(VAR_DIR)/supervisord.conf

bench: bench-pipeline

# The product: the real agents behind the HTTP API (gunicorn), the finance mix, the Kafka relay beside it.
bench-pipeline: $(VENV)/.dev services
	./scripts/tune-postgres.sh
	$(BIN)/python bench/pipeline.py

# The consumer framework's own cost: pass-through agents, in-process ingest (a reference, not the product).
bench-framework: $(VENV)/.dev services
	./scripts/tune-postgres.sh
	$(BIN)/python bench/pipeline.py --pass-through

bench-stream: $(VENV)/.dev services
	$(BIN)/python bench/stream.py --events 200000 --relays 1
	$(BIN)/python bench/stream.py --events 200000 --relays 2

bench-queries: $(VENV)/.dev services
	./scripts/tune-postgres.sh
	$(BIN)/python bench/queries.py --threads 4,1

# Read latency while the make stack topology ingests at 50 % of its throughput (bench/ingest.py's load,
# its own database on the same PostgreSQL).
bench-queries-ingesting: $(VENV)/.dev services
	./scripts/tune-postgres.sh
	$(BIN)/python bench/queries.py --threads 4,1 --while-ingesting

# Command latency on make stack's processes (the Procfile under supervisord, on the local services):
# single POSTs and batches of 100 while the pipeline works at 50 % of its throughput. No
# tune-postgres.sh: make stack runs on PostgreSQL as installed.
bench-ingest: $(VENV)/.dev services
	$(BIN)/python bench/ingest.py

# Horizontal scale: 1, 2, 4, 8 tool workers against a 50 ms HTTP tool, then one agent type scaled by
# adding a host (network namespaces: needs root). Runs on PostgreSQL, RabbitMQ and Redis of its own
# (the installed binaries; `services` makes sure they are there). Writes a plot (matplotlib).
bench-scale: $(VENV)/.bench services
	$(BIN)/python bench/scale.py

clean:
	rm -rf var/ .pytest_cache .ruff_cache   # .cache/ (the Kafka jars) is kept; delete it by hand
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
