# shellcheck shell=bash
# Part "compose": docker-compose.yml without a container engine (none runs here). compose/tests/
# (pytest) validates it against the Compose Specification's JSON Schema (the copy vendored in the
# pinned check-jsonschema wheel, checked against its recorded sha256, applied with the pinned
# jsonschema) and shows that broken copies fail; checks what the schema cannot (environment names
# the binaries read, loopback-only ports, depends_on conditions, service URLs and ports, the
# collector pipeline); then runs the services' commands and environment with the local debug
# builds against the PostgreSQL and Redis that scripts/test starts: compose/postgres-init.sh,
# `batond migrate` as the owner, batond as the role the script creates, its healthcheck command,
# and baton-mcp answering an MCP tool call through batond.
#
# Pins: compose/tests/requirements.txt (PyPI, installed with --no-deps into
# ~/.cache/baton/venv-compose; reinstalled only when it or the Python version changes).
#
# The smoke test needs a PostgreSQL role that may create databases and roles, standing in for the
# superuser the postgres image makes of POSTGRES_USER: baton_compose, created here as the cluster's
# superuser (the cluster scripts/test manages; with BATON_TEST_DATABASE_URL pointing elsewhere,
# set BATON_COMPOSE_DATABASE_URL to such a role yourself).

baton_compose_venv() {
  local venv=$1
  python3 --version >"$BATON_CACHE_DIR/.compose-python-version"
  # shellcheck disable=SC2016 # $1 is the inner bash's argument
  baton_helm_stamped "$venv" compose/tests/requirements.txt "$BATON_CACHE_DIR/.compose-python-version" -- \
    bash -c 'python3 -m venv "$1" && "$1/bin/pip" install --quiet --disable-pip-version-check --no-deps -r compose/tests/requirements.txt' _ "$venv"
}

# Creates (once) the role the smoke test connects as, on the local cluster; exports its URL.
baton_compose_pg_role() {
  [[ -n ${BATON_COMPOSE_DATABASE_URL:-} ]] && return 0
  local port
  port=$(sed -n 's|^postgres://[^@]*@127\.0\.0\.1:\([0-9]*\)/.*|\1|p' <<<"${BATON_TEST_DATABASE_URL:-}")
  [[ -n $port ]] || { echo "compose: BATON_TEST_DATABASE_URL is not the local cluster; set BATON_COMPOSE_DATABASE_URL"; return 1; }
  baton_pg_superuser_sql "$port" <<'SQL' || return 1
DO $$
BEGIN
  CREATE ROLE baton_compose LOGIN PASSWORD 'baton_compose' CREATEDB CREATEROLE;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;
END
$$;
ALTER ROLE baton_compose WITH LOGIN PASSWORD 'baton_compose' CREATEDB CREATEROLE;
SQL
  export BATON_COMPOSE_DATABASE_URL="postgres://baton_compose:baton_compose@127.0.0.1:$port/postgres"
}

part_compose() {
  local venv="$BATON_CACHE_DIR/venv-compose" log rc=0 tool
  for tool in python3 psql; do
    command -v "$tool" >/dev/null 2>&1 || { echo "compose: $tool not found"; check_failed "compose: $tool missing" 1; return 0; }
  done
  baton_compose_venv "$venv" || { check_failed "compose: Python test environment" 1; return 0; }
  baton_compose_pg_role || { check_failed "compose: PostgreSQL role baton_compose" 1; return 0; }
  baton_build_bins || { check_failed "compose: building batond and baton-mcp" 1; return 0; }

  log=$(mktemp)
  "$venv/bin/python" -m pytest compose/tests -p no:cacheprovider -v -rfE 2>&1 | tee "$log" || rc=$?
  count_pytest_results "$log"
  rm -f "$log"
  if ((rc != 0)); then check_failed "compose tests" "$rc"; fi
}
