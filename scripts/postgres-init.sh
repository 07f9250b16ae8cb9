#!/usr/bin/env bash
# docker-compose: runs once in the postgres container's first start, as the image's superuser. Creates
# the schema owner (no superuser: it runs migrations only), the application role (agent workers) and
# the platform role (cross-tenant processes), all bound by row-level security, and the database.
set -euo pipefail
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres <<SQL
CREATE ROLE sentinai LOGIN PASSWORD '${OWNER_DB_PASSWORD:-sentinai}' NOSUPERUSER NOBYPASSRLS NOCREATEROLE;
CREATE ROLE sentinai_app LOGIN PASSWORD '${APP_DB_PASSWORD:-sentinai_app}' NOSUPERUSER NOBYPASSRLS;
CREATE ROLE sentinai_platform LOGIN PASSWORD '${PLATFORM_DB_PASSWORD:-sentinai_platform}' NOSUPERUSER NOBYPASSRLS;
GRANT sentinai_platform TO sentinai;
CREATE DATABASE sentinai OWNER sentinai;
SQL
