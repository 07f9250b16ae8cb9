#!/usr/bin/env bash
# Start the local PostgreSQL, RabbitMQ and Redis where they are down, and create what SentinAI needs
# in them (database roles, databases, the RabbitMQ test vhost). Idempotent; safe to run any time.
# The commands are the ones DEVELOPERS.md documents.
set -euo pipefail

log() { printf '[services] %s\n' "$*"; }

# --- PostgreSQL ------------------------------------------------------------------------------
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -q -h 127.0.0.1 -p 5432 || { log "PostgreSQL did not start"; exit 1; }

psql_admin() { psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -qtAc "$1"; }
# The schema owner (runs migrations) and the application role (bound by row-level security).
psql_admin "DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sentinai') THEN
    CREATE ROLE sentinai LOGIN CREATEDB NOSUPERUSER NOBYPASSRLS; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sentinai_app') THEN
    CREATE ROLE sentinai_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB; END IF;
END \$\$;"
for db in sentinai; do
  if [ -z "$(psql_admin "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
    log "creating database $db"
    psql_admin "CREATE DATABASE $db OWNER sentinai"
  fi
done

# --- RabbitMQ --------------------------------------------------------------------------------
if ! rabbitmqctl -q status >/dev/null 2>&1; then
  log "starting RabbitMQ"
  rabbitmq-server -detached
  sleep 2
fi
rabbitmqctl -q await_startup --timeout 60 >/dev/null
for vhost in sentinai_test; do
  rabbitmqctl -q list_vhosts | grep -qx "$vhost" || rabbitmqctl -q add_vhost "$vhost"
  rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null
done
if [ "${WITH_MANAGEMENT:-0}" = "1" ]; then
  rabbitmq-plugins -q enable rabbitmq_management >/dev/null
fi

# --- Redis -----------------------------------------------------------------------------------
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no
  for _ in $(seq 1 20); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.5; done
fi
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null

log "PostgreSQL, RabbitMQ and Redis are up"
