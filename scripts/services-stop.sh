#!/usr/bin/env bash
# Stop the services scripts/services.sh started on this machine (those with a pid file under var/services/run/),
# for a developer's machine. Services it found already running are left alone.
set -uo pipefail
cd "$(dirname "$0")/.."
RUN_DIR=$(realpath -m "${SENTINAI_SERVICES_DIR:-var/services}")/run
log() { printf '[services] %s\n' "$*"; }

alive() { kill -0 "$1" 2>/dev/null; }
stop_pid() {  # stop_pid NAME PID: SIGTERM, then wait up to 30 s for a clean shutdown
  local name=$1 pid=$2
  alive "$pid" || return 0
  log "stopping $name (pid $pid)"
  kill -TERM "$pid"
  for _ in $(seq 1 60); do alive "$pid" || return 0; sleep 0.5; done
  log "$name did not stop within 30 s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null
}

for name in kafka redis rabbitmq postgresql; do
  file=$RUN_DIR/$name.pid
  [ -f "$file" ] || continue
  pid=$(cat "$file")
  case $name in
    postgresql) alive "$pid" && { log "stopping PostgreSQL"; pg_ctlcluster --skip-systemctl-redirect 15 main stop; } ;;
    rabbitmq) alive "$pid" && { log "stopping RabbitMQ"; rabbitmqctl -q stop >/dev/null 2>&1 || stop_pid RabbitMQ "$pid"; } ;;
    *) stop_pid "$name" "$pid" ;;
  esac
  rm -f "$file"
done
log "stopped what scripts/services.sh had started"
