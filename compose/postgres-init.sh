#!/usr/bin/env bash
# Run once by the postgres service of docker-compose.yml when it initializes its volume
# (/docker-entrypoint-initdb.d), as $POSTGRES_USER: the superuser that owns the database and
# runs `batond migrate`. Creates the role batond serves as: a LOGIN member of baton_app that owns
# nothing, is no superuser and has no BYPASSRLS, so row-level security binds it. The migrations
# grant baton_app what it may do on the tables (migrations/postgres/0003_tenant_isolation.sql);
# baton_app is created here first because the serving role joins it now, before any migration.
# compose/tests runs this same script against the test PostgreSQL.
set -euo pipefail

: "${POSTGRES_USER:?}" "${POSTGRES_DB:?}" "${BATON_SERVER_ROLE:?}" "${BATON_SERVER_PASSWORD:?}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v server_role="$BATON_SERVER_ROLE" -v server_password="$BATON_SERVER_PASSWORD" <<'SQL'
SELECT 'CREATE ROLE baton_app NOLOGIN'
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'baton_app') \gexec
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD %L IN ROLE baton_app',
              :'server_role', :'server_password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'server_role') \gexec
SQL
