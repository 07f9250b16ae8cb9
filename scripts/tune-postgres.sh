#!/usr/bin/env bash
# Give the local PostgreSQL the settings a write-heavy event store needs (the Debian defaults are sized
# for a laptop: 128 MB shared_buffers, 1 GB of WAL between checkpoints). Used by `make bench`;
# production sizing is discussed in docs/performance.md. Idempotent; restarts PostgreSQL only when a
# setting that needs it changed.
set -euo pipefail
psql_admin() { psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -qtAc "$1"; }
declare -A want=(
  [shared_buffers]=2GB
  [max_wal_size]=8GB
  [min_wal_size]=1GB
  [checkpoint_timeout]=15min
  [wal_buffers]=64MB
  [wal_compression]=lz4
  [effective_cache_size]=12GB
  [shared_preload_libraries]=pg_stat_statements
  [autovacuum_naptime]=10s
)
restart=0
for name in "${!want[@]}"; do
  current=$(psql_admin "SELECT current_setting('$name')")
  wanted="${want[$name]}"
  if [ "$current" != "$wanted" ]; then
    psql_admin "ALTER SYSTEM SET $name = '${want[$name]}'"
    context=$(psql_admin "SELECT context FROM pg_settings WHERE name = '$name'")
    [ "$context" = "postmaster" ] && restart=1
  fi
done
if [ "$restart" = 1 ]; then
  echo "[tune-postgres] restarting PostgreSQL for new settings"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main restart
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done
else
  psql_admin "SELECT pg_reload_conf()" >/dev/null
fi
