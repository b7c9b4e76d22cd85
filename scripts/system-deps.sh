#!/usr/bin/env bash
# Installs the Debian packages the tests need, only those that are missing:
# chromium (browser tests), redis-server / redis-tools, postgresql.
# `system-deps.sh --bench`: the load generators `make bench` drives instead (wrk, hey).
set -euo pipefail

missing=()
if [[ "${1:-}" == --bench ]]; then
  command -v wrk >/dev/null || missing+=(wrk)
  command -v hey >/dev/null || missing+=(hey)
  command -v redis-server >/dev/null || missing+=(redis-server)
else
  [[ -x /usr/bin/chromium ]] || missing+=(chromium fonts-liberation)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v redis-cli >/dev/null || missing+=(redis-tools)
  if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null \
      || ! command -v pg_isready >/dev/null || ! command -v psql >/dev/null; then
    missing+=(postgresql)
  fi
fi
((${#missing[@]})) || exit 0

sudo=()
if [[ "$(id -u)" != 0 ]]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    echo "system-deps: missing Debian packages: ${missing[*]}" >&2
    echo "system-deps: not root and no password-less sudo; install them with:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    echo "system-deps: the tests that need them will be skipped (they fail under CI=true)" >&2
    exit 0
  fi
fi

echo "system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  "${missing[@]}" </dev/null
