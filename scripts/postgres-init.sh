#!/usr/bin/env bash
# docker-compose: runs once in the postgres container's first start. The image creates the owner
# role (POSTGRES_USER) and database; this adds the application role, bound by row-level security.
set -euo pipefail
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" <<SQL
CREATE ROLE sentinai_app LOGIN PASSWORD '${APP_DB_PASSWORD:-sentinai_app}' NOSUPERUSER NOBYPASSRLS;
SQL
