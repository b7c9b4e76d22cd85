# shellcheck shell=bash
# Finds PostgreSQL and Redis for the tests and exports PW_TEST_DATABASE_URL / PW_TEST_REDIS_URL.
# Sourced by `make test` (`source scripts/test-services.sh`), in the shell that then runs the tests.
#
# For each service, the first that applies:
#   1. the URL is already set in the environment: it is used as it is;
#   2. the system server answers on 127.0.0.1 (PostgreSQL 5432, Redis 6379): it is used;
#   3. not under CI: a private throwaway server is started on a free port (state under
#      .services/), and stopped when the sourcing shell exits.
# Under CI=true nothing private is started and nothing is skipped: an unreachable service
# leaves its URL unset and the test fixtures fail.
# PW_FORCE_PRIVATE_SERVICES=1 skips step 2, to exercise step 3 where system servers run.

_pw_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_pw_run_dir=""
_pw_tmp_dir=""
_pw_pg_data=""
_pw_pg_as=()
_pw_pg_bin=""
_pw_redis_port=""

_pw_log() { echo "test-services: $*" >&2; }

_pw_is_ci() { [[ "${CI:-}" =~ ^(true|1|yes)$ ]]; }

_pw_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

_pw_redis_answers() {  # host port
  [[ "$(timeout 3 redis-cli -h "$1" -p "$2" ping 2>/dev/null)" == PONG ]]
}

_pw_make_run_dir() {  # this run's private state; everything in it goes when the shell exits
  if [[ -z "$_pw_run_dir" ]]; then
    mkdir -p "$_pw_root/.services"
    _pw_run_dir="$(mktemp -d "$_pw_root/.services/run.XXXXXX")"
    chmod 755 "$_pw_run_dir"
    trap _pw_services_stop EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
  fi
}

_pw_services_stop() {
  if [[ -n "$_pw_pg_data" ]]; then
    "${_pw_pg_as[@]}" "$_pw_pg_bin/pg_ctl" -D "$_pw_pg_data" -m immediate -w stop >/dev/null 2>&1 || true
    _pw_log "stopped private PostgreSQL"
  fi
  if [[ -n "$_pw_redis_port" ]]; then
    redis-cli -h 127.0.0.1 -p "$_pw_redis_port" shutdown nosave >/dev/null 2>&1 || true
    _pw_log "stopped private Redis"
  fi
  rm -rf "$_pw_run_dir" "$_pw_tmp_dir"
  _pw_pg_data="" _pw_redis_port="" _pw_run_dir="" _pw_tmp_dir=""
}

_pw_start_private_postgres() {
  _pw_pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  if [[ -z "$_pw_pg_bin" ]]; then _pw_log "no PostgreSQL server installed"; return 1; fi
  local base port
  _pw_make_run_dir
  base="$_pw_run_dir/pg"
  mkdir -p "$base"
  if [[ "$(id -u)" == 0 ]]; then
    # initdb and postgres refuse to run as root: run them as the postgres user.
    _pw_pg_as=(runuser -u postgres --)
    chown postgres: "$base"
  fi
  # The socket lives in $base: a Unix socket path must be short; postgres must reach it.
  if (( ${#base} > 80 )) || [[ "$base" == *" "* ]] \
      || ! "${_pw_pg_as[@]}" test -w "$base" 2>/dev/null; then
    _pw_tmp_dir="$(mktemp -d /tmp/pw-pg.XXXXXX)"
    chmod 755 "$_pw_tmp_dir"
    base="$_pw_tmp_dir/pg"
    mkdir -p "$base"
    if [[ "$(id -u)" == 0 ]]; then chown postgres: "$base"; fi
  fi
  port="$(_pw_free_port)"
  _pw_pg_data="$base/data"
  if ! "${_pw_pg_as[@]}" "$_pw_pg_bin/initdb" -D "$_pw_pg_data" -U postgres -A trust -E UTF8 \
      --locale=C --no-sync >"$base/initdb.log" 2>&1; then
    _pw_log "initdb failed:"; cat "$base/initdb.log" >&2; return 1
  fi
  if ! "${_pw_pg_as[@]}" "$_pw_pg_bin/pg_ctl" -D "$_pw_pg_data" -l "$base/server.log" -w -t 30 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $base -c fsync=off -c full_page_writes=off" \
      start >/dev/null; then
    _pw_log "PostgreSQL did not start:"; cat "$base/server.log" >&2; return 1
  fi
  if ! "$_pw_pg_bin/createdb" -h 127.0.0.1 -p "$port" -U postgres test; then
    _pw_log "createdb test failed"; return 1
  fi
  export PW_TEST_DATABASE_URL="postgresql://postgres@127.0.0.1:$port/test"
  _pw_log "started private PostgreSQL on 127.0.0.1:$port"
}

_pw_start_private_redis() {
  if ! command -v redis-server >/dev/null; then _pw_log "no redis-server installed"; return 1; fi
  local dir port
  _pw_make_run_dir
  dir="$_pw_run_dir/redis"
  mkdir -p "$dir"
  port="$(_pw_free_port)"
  redis-server --bind 127.0.0.1 --port "$port" --daemonize yes --save '' --appendonly no \
    --dir "$dir" --logfile "$dir/redis.log" --pidfile "$dir/redis.pid" >/dev/null
  _pw_redis_port="$port"
  for _ in $(seq 50); do _pw_redis_answers 127.0.0.1 "$port" && break; sleep 0.1; done
  if ! _pw_redis_answers 127.0.0.1 "$port"; then _pw_log "Redis did not start"; return 1; fi
  export PW_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
  _pw_log "started private Redis on 127.0.0.1:$port"
}

_pw_find_postgres() {
  if [[ -n "${PW_TEST_DATABASE_URL:-}" ]]; then return; fi
  if [[ -z "${PW_FORCE_PRIVATE_SERVICES:-}" ]] && command -v pg_isready >/dev/null \
      && pg_isready -q -h 127.0.0.1 -p 5432; then
    local user
    for user in postgres root; do
      if psql -h 127.0.0.1 -p 5432 -U "$user" -d postgres -tAc 'select 1' >/dev/null 2>&1; then
        if [[ -z "$(psql -h 127.0.0.1 -p 5432 -U "$user" -d postgres -tAc \
            "select 1 from pg_database where datname = 'test'")" ]]; then
          createdb -h 127.0.0.1 -p 5432 -U "$user" test || true
        fi
        export PW_TEST_DATABASE_URL="postgresql://$user@127.0.0.1:5432/test"
        return
      fi
    done
    _pw_log "PostgreSQL answers on 127.0.0.1:5432 but neither postgres nor root may log in"
  fi
  if _pw_is_ci; then _pw_log "CI: no PostgreSQL reachable; the tests that need it will fail"; return; fi
  _pw_start_private_postgres || _pw_log "no PostgreSQL: the tests that need it will be skipped"
}

_pw_find_redis() {
  if [[ -n "${PW_TEST_REDIS_URL:-}" ]]; then return; fi
  if [[ -z "${PW_FORCE_PRIVATE_SERVICES:-}" ]] && _pw_redis_answers 127.0.0.1 6379; then
    export PW_TEST_REDIS_URL="redis://127.0.0.1:6379/0"
    return
  fi
  if _pw_is_ci; then _pw_log "CI: no Redis reachable; the tests that need it will fail"; return; fi
  _pw_start_private_redis || _pw_log "no Redis: the tests that need it will be skipped"
}

_pw_find_postgres
_pw_find_redis
_pw_log "PW_TEST_DATABASE_URL=${PW_TEST_DATABASE_URL:-<unset>} PW_TEST_REDIS_URL=${PW_TEST_REDIS_URL:-<unset>}"
