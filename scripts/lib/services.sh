# shellcheck shell=bash
# Shared install-and-start logic for the services Baton's tests need:
# PostgreSQL 15 (Debian's cluster tools) and a private Redis on a loopback port.
# Sourced by scripts/test and scripts/dev-services; defines functions only (plus
# defaults below), so sourcing it has no side effects.
#
# Everything is idempotent: packages are installed only when missing, a running
# cluster or Redis is reused, and the role and database are created only if absent.
# Nothing here ever drops or stops anything: other checkouts on the same machine
# may share the cluster and the Redis.
#
# Entry point: baton_services_up. It exports
#   BATON_TEST_DATABASE_URL   (kept as is if already set; then no local PostgreSQL, and
#                              BATON_TEST_APP_DATABASE_URL must be set too)
#   BATON_TEST_APP_DATABASE_URL  the serving role on the same database
#   BATON_TEST_REDIS_URL      (kept as is if already set; then no private Redis)
#   BATON_TEST_REDIS_SERVER   path of redis-server, for tests that kill and restart it
# and, for the client suites' read-your-writes tests, baton_read_replica_up BATOND exports
#   BATON_TEST_READ_REPLICA_URL  a held-back hot standby of the local cluster (serving role);
# unlike the rest, that standby is private to one run: made anew each time, and
# baton_read_replica_down stops and deletes it.
# Logs go to stderr so that stdout stays free for callers (dev-services prints exports).

: "${HOME:=$(getent passwd "$(id -u)" | cut -d: -f6)}"
: "${BATON_CACHE_DIR:=$HOME/.cache/baton}"
: "${BATON_PG_VERSION:=15}"
: "${BATON_PG_CLUSTER:=main}"
: "${BATON_REDIS_PORT:=6390}"
: "${BATON_WAIT_SECONDS:=60}"
: "${BATON_PG_STANDBY_PORT:=5433}"

baton_log() { printf '[services] %s\n' "$*" >&2; }
baton_die() {
  printf '[services] ERROR: %s\n' "$*" >&2
  exit 1
}

# Run a command as root: directly if we are root, else through sudo (non-interactive
# when there is no terminal, as in CI), else fail with a clear message.
baton_as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    if [[ -t 0 ]]; then sudo -- "$@"; else sudo -n -- "$@"; fi
  else
    baton_die "'$*' needs root, and this is not root and has no sudo. Run as root, install sudo, or set BATON_TEST_DATABASE_URL / BATON_TEST_REDIS_URL to services you run yourself."
  fi
}

# Run a command as the postgres OS user (peer authentication on the local socket).
# From / so that psql does not complain about an unreadable working directory.
baton_as_postgres() {
  (
    cd /
    if [[ $(id -u) -eq 0 ]]; then
      runuser -u postgres -- "$@"
    elif command -v sudo >/dev/null 2>&1; then
      if [[ -t 0 ]]; then sudo -u postgres -- "$@"; else sudo -n -u postgres -- "$@"; fi
    else
      baton_die "'$*' must run as the postgres user, and this is not root and has no sudo."
    fi
  )
}

baton_have() {
  local c
  for c in "$@"; do command -v "$c" >/dev/null 2>&1 || return 1; done
}

# Install what is missing, and only that; apt-get update only when installing.
baton_ensure_packages() {
  local pkgs=()
  if [[ -z ${BATON_TEST_DATABASE_URL:-} ]]; then
    if ! dpkg -s "postgresql-$BATON_PG_VERSION" >/dev/null 2>&1 ||
      ! baton_have pg_ctlcluster pg_createcluster pg_lsclusters pg_isready psql; then
      pkgs+=("postgresql-$BATON_PG_VERSION" "postgresql-client-$BATON_PG_VERSION")
    fi
  fi
  if ! baton_have redis-server redis-cli; then
    pkgs+=(redis-server redis-tools)
  fi
  if ((${#pkgs[@]} == 0)); then
    baton_log "packages: all present"
    return 0
  fi
  baton_log "packages: installing ${pkgs[*]}"
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300)
  baton_as_root "${apt[@]}" update </dev/null >&2
  baton_as_root "${apt[@]}" install -y --no-install-recommends "${pkgs[@]}" </dev/null >&2
}

# Prints "port status logfile" of the cluster, or nothing if it does not exist.
baton_pg_cluster_info() {
  pg_lsclusters -h 2>/dev/null |
    awk -v v="$BATON_PG_VERSION" -v n="$BATON_PG_CLUSTER" '$1 == v && $2 == n { print $3, $4, $7 }'
}

baton_pg_wait_ready() {
  local port=$1 i
  for ((i = 0; i < BATON_WAIT_SECONDS * 2; i++)); do
    pg_isready -q -h 127.0.0.1 -p "$port" && return 0
    sleep 0.5
  done
  return 1
}

# Runs SQL from stdin as the postgres superuser on the local socket.
baton_pg_superuser_sql() {
  local port=$1
  baton_as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$port" -d postgres
}

baton_start_postgres() {
  if [[ -n ${BATON_TEST_DATABASE_URL:-} ]]; then
    # The tests serve as a role that owns nothing, as production does (README, Security).
    [[ -n ${BATON_TEST_APP_DATABASE_URL:-} ]] ||
      baton_die "postgres: BATON_TEST_DATABASE_URL is set but BATON_TEST_APP_DATABASE_URL is not: set it to the same database as a serving role that owns nothing, lacks BYPASSRLS and is a member of baton_app (as scripts/lib/services.sh makes baton_server)"
    baton_log "postgres: BATON_TEST_DATABASE_URL is set; using it, no local cluster setup"
    return 0
  fi
  local v=$BATON_PG_VERSION c=$BATON_PG_CLUSTER info port status logfile out
  info=$(baton_pg_cluster_info)
  if [[ -z $info ]]; then
    baton_log "postgres: no $v/$c cluster; creating it"
    baton_as_root pg_createcluster "$v" "$c" --start >&2
  else
    read -r port status logfile <<<"$info"
    if [[ $status == online* ]]; then
      baton_log "postgres: $v/$c already running on port $port"
    else
      baton_log "postgres: starting $v/$c"
      if ! out=$(baton_as_root pg_ctlcluster "$v" "$c" start 2>&1); then
        # Someone else may have started it in between: that's fine.
        if ! grep -qi 'already running' <<<"$out"; then
          printf '%s\n' "$out" >&2
          [[ -r $logfile ]] && tail -n 30 "$logfile" >&2
          baton_die "pg_ctlcluster $v $c start failed"
        fi
      fi
    fi
  fi
  read -r port status logfile <<<"$(baton_pg_cluster_info)"
  [[ -n $port ]] || baton_die "postgres: cluster $v/$c not found after start"
  if ! baton_pg_wait_ready "$port"; then
    [[ -r $logfile ]] && tail -n 30 "$logfile" >&2
    baton_die "postgres: not ready on 127.0.0.1:$port after ${BATON_WAIT_SECONDS}s"
  fi

  # Role baton: created if missing. Concurrent creators race harmlessly.
  baton_pg_superuser_sql "$port" <<'SQL' >&2
SET client_min_messages = warning;
DO $$
BEGIN
  CREATE ROLE baton LOGIN PASSWORD 'baton' CREATEDB;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;
END
$$;
-- The serving role batond runs as in tests: a member of baton_app (granted access by the
-- migrations), owning no table, without BYPASSRLS, so row-level security binds it.
DO $$
BEGIN
  CREATE ROLE baton_app NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;
END
$$;
DO $$
BEGIN
  CREATE ROLE baton_server LOGIN PASSWORD 'baton_server' NOBYPASSRLS IN ROLE baton_app;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;
END
$$;
SQL
  # TCP on 127.0.0.1 uses scram-sha-256 in Debian's pg_hba.conf, so the password
  # matters. If a pre-existing role has another one (or no LOGIN), reset it.
  if ! PGPASSWORD=baton PGCONNECT_TIMEOUT=10 psql -X -q -At -h 127.0.0.1 -p "$port" \
    -U baton -d postgres -c 'select 1' >/dev/null 2>&1; then
    baton_log "postgres: role baton cannot log in with the test password; resetting it"
    baton_pg_superuser_sql "$port" <<<"ALTER ROLE baton WITH LOGIN PASSWORD 'baton' CREATEDB;" >&2
  fi

  # Database baton_test owned by baton: created if missing (CREATE DATABASE cannot
  # run in a DO block, hence \gexec). A concurrent creator is tolerated.
  if ! baton_pg_superuser_sql "$port" >&2 <<'SQL'; then
SELECT 'CREATE DATABASE baton_test OWNER baton'
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'baton_test')\gexec
SQL
    local exists
    exists=$(baton_as_postgres psql -X -At -p "$port" -d postgres \
      -c "SELECT 1 FROM pg_database WHERE datname = 'baton_test'")
    [[ $exists == 1 ]] || baton_die "postgres: could not create database baton_test"
    baton_log "postgres: baton_test was created meanwhile by another run; the error above is harmless"
  fi

  export BATON_TEST_DATABASE_URL="postgres://baton:baton@127.0.0.1:$port/baton_test"
  export BATON_TEST_APP_DATABASE_URL="postgres://baton_server:baton_server@127.0.0.1:$port/baton_test"
  baton_log "postgres: ready, BATON_TEST_DATABASE_URL=$BATON_TEST_DATABASE_URL"
}

baton_redis_ping() {
  [[ $(timeout 5 redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) == PONG ]]
}

baton_start_redis() {
  BATON_TEST_REDIS_SERVER=$(command -v redis-server) || baton_die "redis-server not found"
  export BATON_TEST_REDIS_SERVER
  if [[ -n ${BATON_TEST_REDIS_URL:-} ]]; then
    baton_log "redis: BATON_TEST_REDIS_URL is set; using it, no private Redis"
    return 0
  fi
  local port=$BATON_REDIS_PORT dir=$BATON_CACHE_DIR/redis i
  if baton_redis_ping "$port"; then
    baton_log "redis: already answering on 127.0.0.1:$port"
  else
    baton_log "redis: starting a private server on 127.0.0.1:$port (dir $dir)"
    mkdir -p "$dir"
    "$BATON_TEST_REDIS_SERVER" --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
      --daemonize yes --dir "$dir" --pidfile "$dir/redis-$port.pid" \
      --logfile "$dir/redis-$port.log" </dev/null >&2
    for ((i = 0; i < BATON_WAIT_SECONDS * 2; i++)); do
      baton_redis_ping "$port" && break
      sleep 0.5
    done
    if ! baton_redis_ping "$port"; then
      tail -n 30 "$dir/redis-$port.log" >&2 2>/dev/null || true
      baton_die "redis: nothing answers on 127.0.0.1:$port after ${BATON_WAIT_SECONDS}s"
    fi
  fi
  export BATON_TEST_REDIS_URL="redis://127.0.0.1:$port"
  baton_log "redis: ready, BATON_TEST_REDIS_URL=$BATON_TEST_REDIS_URL"
}

baton_services_up() {
  mkdir -p "$BATON_CACHE_DIR"
  baton_ensure_packages
  baton_start_postgres
  baton_start_redis
}

# --- a held-back read replica ------------------------------------------------------

# Where the standby lives: under the postgres user's home (it must own the directory, and
# cannot reach a cache under a private home such as /root).
baton_standby_dir() {
  printf '%s\n' "${BATON_PG_STANDBY_DIR:-$(getent passwd postgres | cut -d: -f6)/baton-standby}"
}

# Stops and deletes the standby made by baton_read_replica_up, if there is one.
baton_read_replica_down() {
  local dir bin=/usr/lib/postgresql/$BATON_PG_VERSION/bin
  dir=$(baton_standby_dir)
  [[ -d $dir ]] || return 0
  if [[ -f $dir/data/postmaster.pid ]]; then
    baton_as_postgres "$bin/pg_ctl" stop -D "$dir/data" -m immediate -w -t 30 >&2 || true
  fi
  baton_as_root rm -rf "$dir"
}

# Makes a hot standby of the local cluster that is held back: it applies nothing written after
# it was made (recovery_min_apply_delay = 1h), so a read it serves misses every later write.
# That is how the client suites tell a read served by a read replica from one served by the
# primary, deterministically. First the test database is migrated with BATOND ($1) as its
# owner, so the standby has the current schema; any standby left by an earlier run is stopped
# and deleted. Exports BATON_TEST_READ_REPLICA_URL (baton_server on the standby's database) and
# sets BATON_STANDBY_MADE=1 once there is a standby of this run's to remove (a half-made one
# included).
baton_read_replica_up() {
  local batond=$1 v=$BATON_PG_VERSION port=$BATON_PG_STANDBY_PORT dir bin info primary status logfile
  local name setting settings=()
  bin=/usr/lib/postgresql/$v/bin
  if [[ -n ${BATON_TEST_READ_REPLICA_URL:-} ]]; then
    baton_log "read replica: BATON_TEST_READ_REPLICA_URL is set; using it"
    return 0
  fi
  info=$(baton_pg_cluster_info)
  read -r primary status logfile <<<"$info"
  if [[ -z $info || $status != online* || -z ${BATON_TEST_APP_DATABASE_URL:-} ||
    $BATON_TEST_DATABASE_URL != *"@127.0.0.1:$primary/"* ]]; then
    baton_die "read replica: BATON_TEST_DATABASE_URL is not the local $v/$BATON_PG_CLUSTER cluster this makes a standby of; set BATON_TEST_READ_REPLICA_URL to a hot standby of your database (held back: recovery_min_apply_delay = '1h')"
  fi
  [[ -x $batond ]] || baton_die "read replica: no batond at '$batond' to migrate the test database with"
  # One run at a time owns the standby: another run's would remake or delete it under this one.
  # The lock is held until this shell exits.
  mkdir -p "$BATON_CACHE_DIR"
  exec {BATON_STANDBY_LOCK_FD}>"$BATON_CACHE_DIR/pg-standby.lock"
  flock -n "$BATON_STANDBY_LOCK_FD" ||
    baton_die "read replica: another run on this machine holds its standby ($BATON_CACHE_DIR/pg-standby.lock); wait for it to end"

  baton_log "read replica: migrating the test database ($batond migrate)"
  env -u DATABASE_READ_URL -u BATON_MIGRATE_DATABASE_URL -u REDIS_URL RUST_LOG=warn \
    DATABASE_URL="$BATON_TEST_DATABASE_URL" "$batond" migrate >&2 ||
    baton_die "read replica: batond migrate failed"

  dir=$(baton_standby_dir)
  baton_read_replica_down
  if pg_isready -q -h 127.0.0.1 -p "$port"; then
    baton_die "read replica: something else listens on 127.0.0.1:$port (set BATON_PG_STANDBY_PORT to a free port)"
  fi
  # A hot standby needs these at least as high as on its primary.
  for name in max_connections max_worker_processes max_wal_senders max_prepared_transactions max_locks_per_transaction; do
    setting=$(baton_as_postgres psql -X -At -p "$primary" -d postgres -c "SHOW $name") ||
      baton_die "read replica: cannot read $name from the primary"
    settings+=("$name = $setting")
  done

  BATON_STANDBY_MADE=1
  baton_log "read replica: pg_basebackup of port $primary into $dir"
  baton_as_root install -d -o postgres -g postgres -m 700 "$dir" "$dir/socket"
  baton_as_postgres "$bin/pg_basebackup" -D "$dir/data" -p "$primary" -R -X stream -c fast --no-sync >&2 ||
    baton_die "read replica: pg_basebackup failed"
  # Debian keeps the cluster's configuration outside its data directory: the copy gets its own.
  baton_as_postgres tee -a "$dir/data/postgresql.conf" >/dev/null <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/socket'
hot_standby = on
recovery_min_apply_delay = '1h'
shared_buffers = 32MB
$(printf '%s\n' "${settings[@]}")
CONF
  if ! baton_as_postgres test -f "$dir/data/pg_hba.conf"; then
    baton_as_postgres tee "$dir/data/pg_hba.conf" >/dev/null <<'HBA'
local all postgres                peer
host  all all      127.0.0.1/32   scram-sha-256
HBA
    baton_as_postgres touch "$dir/data/pg_ident.conf"
  fi
  # Not inherited by the server, which outlives this shell when the run is killed: a lock it
  # held would keep every later run out.
  if ! baton_as_postgres "$bin/pg_ctl" start -D "$dir/data" -l "$dir/postgres.log" -w -t "$BATON_WAIT_SECONDS" \
    >&2 {BATON_STANDBY_LOCK_FD}>&-; then
    tail -n 30 "$dir/postgres.log" >&2 2>/dev/null || true
    baton_die "read replica: the standby did not start"
  fi
  local url=${BATON_TEST_APP_DATABASE_URL/@127.0.0.1:$primary\//@127.0.0.1:$port/}
  if [[ $(psql -X -At "$url" -c 'SELECT pg_is_in_recovery()' 2>&1) != t ]]; then
    tail -n 30 "$dir/postgres.log" >&2 2>/dev/null || true
    baton_die "read replica: the standby on port $port does not answer as a replica"
  fi
  export BATON_TEST_READ_REPLICA_URL=$url
  baton_log "read replica: ready (held back), BATON_TEST_READ_REPLICA_URL=$BATON_TEST_READ_REPLICA_URL"
}
